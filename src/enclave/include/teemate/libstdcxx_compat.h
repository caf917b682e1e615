/* Force-included into enclave C++: lets libstdc++'s headers (configured for
 * glibc) parse against musl's, so header-only parts of the C++ library
 * (templates, <atomic>, <array>, <span>, <algorithm>...) work in enclaves.
 * Nothing here may define a function or an object. */
#ifndef TEEMATE_LIBSTDCXX_COMPAT_H_
#define TEEMATE_LIBSTDCXX_COMPAT_H_
#ifndef __GLIBC_PREREQ
#define __GLIBC_PREREQ(maj, min) 0
#endif
#ifdef __cplusplus
#include <bits/c++config.h>
/* musl has none of glibc's clock-aware pthread waits. */
#undef _GLIBCXX_USE_PTHREAD_COND_CLOCKWAIT
#undef _GLIBCXX_USE_PTHREAD_MUTEX_CLOCKLOCK
#undef _GLIBCXX_USE_PTHREAD_RWLOCK_CLOCKLOCK
#include <locale.h>
typedef locale_t __locale_t;
#endif
#endif
