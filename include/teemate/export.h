// TEEMATE_EXPORT marks the host API that libteemate.so exports; everything
// else in the library is built with hidden visibility, so applications can
// link only against what the public headers declare. Host-only.
#pragma once

#define TEEMATE_EXPORT [[gnu::visibility("default")]]
