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
/* glibc's ctype class bits, named by libstdc++'s <bits/ctype_base.h>
 * (reached from <memory> and friends); no locale facet is usable here. */
#define TM_ISBIT(bit) ((bit) < 8 ? ((1 << (bit)) << 8) : ((1 << (bit)) >> 8))
enum {
  _ISupper = TM_ISBIT(0), _ISlower = TM_ISBIT(1), _ISalpha = TM_ISBIT(2), _ISdigit = TM_ISBIT(3),
  _ISxdigit = TM_ISBIT(4), _ISspace = TM_ISBIT(5), _ISprint = TM_ISBIT(6), _ISgraph = TM_ISBIT(7),
  _ISblank = TM_ISBIT(8), _IScntrl = TM_ISBIT(9), _ISpunct = TM_ISBIT(10), _ISalnum = TM_ISBIT(11)
};
#undef TM_ISBIT
#endif
#endif
