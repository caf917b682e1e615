// The test enclave: ECALLs that exercise the runtime from inside: echo,
// nested OCALL/ECALL, faults, a handled exception, busy-TCS and threading
// helpers, pointer checks, sealing, reports and keys. Each ECALL id is
// mirrored in tests/integration/test_enclave_ids.h. Test-only: it hands seal
// keys to the host, which no real enclave may do.
#include <stdint.h>
#include <string.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/time.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "teemate/trusted/runtime.h"
#include "teemate/trusted/shared_memory.h"
#include "../integration/test_enclave_ids.h"

namespace {

std::atomic<uint64_t> g_counter{0};
std::atomic<int> g_release{0};
std::atomic<int> g_spinning{0};

int echo(tm_call* c) {
  if (c->nbufs != 2 || c->bufs[1].size < c->bufs[0].size) return TM_ERR_INVALID;
  memcpy(c->bufs[1].data, c->bufs[0].data, c->bufs[0].size);
  c->bufs[1].out_size = c->bufs[0].size;
  return TM_OK;
}
TM_ECALL(kEcallEcho, echo);

int add(tm_call* c) {
  c->scalars[2] = c->scalars[0] + c->scalars[1];
  return TM_OK;
}
TM_ECALL(kEcallAdd, add);

// Calls OCALL kOcallNested, whose host handler makes ECALL kEcallAdd.
int nested(tm_call* c) {
  tm_call o{};
  o.id = kOcallNested;
  o.scalars[0] = c->scalars[0];
  int rc = tm_ocall(&o);
  if (rc != TM_OK) return rc;
  c->scalars[1] = o.scalars[1] + 1;
  return TM_OK;
}
TM_ECALL(kEcallNested, nested);

// n switchless OCALLs, each adding i to a counter the host keeps in an
// inout buffer and answering 2 * i; counts the answers that were wrong.
int switchless_ocalls(tm_call* c) {
  uint64_t counter = 0, wrong = 0;
  for (uint64_t i = 1; i <= c->scalars[0]; ++i) {
    tm_call o{};
    o.id = kOcallSwitchlessAdd;
    o.nbufs = 1;
    o.scalars[0] = i;
    o.bufs[0] = tm_buffer{&counter, sizeof counter, 0, TM_BUF_INOUT};
    int rc = tm_ocall_switchless(&o);
    if (rc != TM_OK) return rc;
    if (o.scalars[1] != 2 * i || o.bufs[0].out_size != sizeof counter) ++wrong;
  }
  c->scalars[0] = counter;
  c->scalars[1] = wrong;
  return TM_OK;
}
TM_ECALL(kEcallSwitchlessOcalls, switchless_ocalls);

// A detached thread that outlives the ECALL: 200 ms later it makes
// scalars[0] switchless OCALLs (the host may be dropping its handle then).
void* late_switchless(void* arg) {
  struct timespec pause_for = {0, 200 * 1000 * 1000};
  nanosleep(&pause_for, nullptr);
  const uint64_t n = reinterpret_cast<uint64_t>(arg);
  uint64_t counter = 0;
  for (uint64_t i = 1; i <= n; ++i) {
    tm_call o{};
    o.id = kOcallSwitchlessAdd;
    o.nbufs = 1;
    o.scalars[0] = i;
    o.bufs[0] = tm_buffer{&counter, sizeof counter, 0, TM_BUF_INOUT};
    if (tm_ocall_switchless(&o) != TM_OK) break;
  }
  return nullptr;
}

int detached_switchless(tm_call* c) {
  pthread_t t;
  if (pthread_create(&t, nullptr, late_switchless, reinterpret_cast<void*>(c->scalars[0])) != 0) return TM_ERR_INVALID;
  pthread_detach(t);
  return TM_OK;
}
TM_ECALL(kEcallDetachedSwitchless, detached_switchless);

int null_deref(tm_call* c) {
  volatile int* p = reinterpret_cast<volatile int*>(c->scalars[0]);
  c->scalars[1] = *p;
  return TM_OK;
}
TM_ECALL(kEcallNullDeref, null_deref);

int divide(tm_call* c) {
  volatile uint64_t a = c->scalars[0], b = c->scalars[1];
  c->scalars[2] = a / b;
  return TM_OK;
}
TM_ECALL(kEcallDivide, divide);

// #UD handler: skip the two-byte ud2 and count the visit.
std::atomic<int> g_ud_seen{0};
int skip_ud2(tm_exception_info* info) {
  if (info->vector != 6) return TM_EXCEPTION_CONTINUE_SEARCH;
  const uint8_t* rip = reinterpret_cast<const uint8_t*>(info->cpu.rip);
  if (rip[0] != 0x0f || rip[1] != 0x0b) return TM_EXCEPTION_CONTINUE_SEARCH;
  info->cpu.rip += 2;
  g_ud_seen.fetch_add(1);
  return TM_EXCEPTION_CONTINUE_EXECUTION;
}

int handled_exception(tm_call* c) {
  tm_register_exception_handler(skip_ud2);
  int before = g_ud_seen.load();
  __asm__ volatile("ud2");
  c->scalars[0] = static_cast<uint64_t>(g_ud_seen.load() - before);
  tm_unregister_exception_handler(skip_ud2);
  return TM_OK;
}
TM_ECALL(kEcallHandledException, handled_exception);

int count(tm_call* c) {
  for (uint64_t i = 0; i < c->scalars[0]; ++i) g_counter.fetch_add(1, std::memory_order_relaxed);
  c->scalars[1] = g_counter.load();
  return TM_OK;
}
TM_ECALL(kEcallCount, count);

int spin_until_released(tm_call*) {
  g_spinning.store(1);
  while (!g_release.load()) __builtin_ia32_pause();
  g_spinning.store(0);
  g_release.store(0);
  return TM_OK;
}
TM_ECALL(kEcallSpin, spin_until_released);

int release(tm_call* c) {
  c->scalars[0] = static_cast<uint64_t>(g_spinning.load());
  g_release.store(1);
  return TM_OK;
}
TM_ECALL(kEcallRelease, release);

// Tries an OCALL whose buffer points outside the enclave: must be refused.
int ocall_with_host_pointer(tm_call* c) {
  tm_call o{};
  o.id = kOcallNested;
  o.nbufs = 1;
  o.bufs[0] = tm_buffer{reinterpret_cast<void*>(c->scalars[0]), 16, 0, TM_BUF_IN};
  c->scalars[1] = static_cast<uint64_t>(tm_ocall(&o));
  return TM_OK;
}
TM_ECALL(kEcallOcallHostPointer, ocall_with_host_pointer);

int heap_stats(tm_call* c) {
  c->scalars[0] = tm_heap_used();
  c->scalars[1] = tm_enclave_base();
  c->scalars[2] = tm_enclave_size();
  return TM_OK;
}
TM_ECALL(kEcallHeapStats, heap_stats);

int do_abort(tm_call*) { tm_abort("requested by the test"); }
TM_ECALL(kEcallAbort, do_abort);

// Seals bufs[0] (plaintext) with bufs[1] (AAD) under policy scalars[0] into
// bufs[2], then unseals the blob inside the enclave. Results: scalars[1] =
// tm_seal's code, scalars[2] = tm_unseal's code, scalars[3] = 1 when the
// unsealed text and AAD equal the originals.
int seal_round_trip(tm_call* c) {
  if (c->nbufs != 3) return TM_ERR_INVALID;
  const tm_buffer& text = c->bufs[0];
  const tm_buffer& aad = c->bufs[1];
  tm_buffer& blob = c->bufs[2];
  const size_t need = tm_sealed_size(text.size, aad.size);
  int rc = tm_seal(static_cast<uint16_t>(c->scalars[0]), aad.data, aad.size, text.data, text.size, blob.data,
                   blob.size);
  c->scalars[1] = static_cast<uint64_t>(rc);
  c->scalars[2] = c->scalars[3] = 0;
  if (rc != TM_OK) return TM_OK;
  blob.out_size = need;
  void* text_back = malloc(text.size + 1);
  void* aad_back = malloc(aad.size + 1);
  if (!text_back || !aad_back) {
    free(text_back);
    free(aad_back);
    return TM_ERR_NO_MEMORY;
  }
  size_t text_len = 0, aad_len = 0;
  rc = tm_unseal(blob.data, need, aad_back, aad.size, &aad_len, text_back, text.size, &text_len);
  c->scalars[2] = static_cast<uint64_t>(rc);
  c->scalars[3] = rc == TM_OK && text_len == text.size && aad_len == aad.size &&
                  (text.size == 0 || memcmp(text_back, text.data, text.size) == 0) &&
                  (aad.size == 0 || memcmp(aad_back, aad.data, aad.size) == 0);
  free(text_back);
  free(aad_back);
  return TM_OK;
}
TM_ECALL(kEcallSealRoundTrip, seal_round_trip);

// Unseals bufs[0] into bufs[1] (text) and bufs[2] (AAD); scalars[0] =
// tm_unseal's code.
int unseal(tm_call* c) {
  if (c->nbufs != 3) return TM_ERR_INVALID;
  size_t text_len = 0, aad_len = 0;
  int rc = tm_unseal(c->bufs[0].data, c->bufs[0].size, c->bufs[2].data, c->bufs[2].size, &aad_len,
                     c->bufs[1].data, c->bufs[1].size, &text_len);
  c->scalars[0] = static_cast<uint64_t>(rc);
  if (rc == TM_OK) {
    c->bufs[1].out_size = text_len;
    c->bufs[2].out_size = aad_len;
  }
  return TM_OK;
}
TM_ECALL(kEcallUnseal, unseal);

// A REPORT with REPORTDATA bufs[0] (64 bytes) into bufs[1] (432 bytes), for
// the TARGETINFO in bufs[2] if given (512 bytes), else for this enclave;
// scalars[0] = tm_report's code.
int report(tm_call* c) {
  if (c->nbufs < 2 || c->nbufs > 3 || c->bufs[0].size != TM_REPORT_DATA_SIZE ||
      c->bufs[1].size != TM_REPORT_SIZE || (c->nbufs == 3 && c->bufs[2].size != TM_TARGET_INFO_SIZE)) {
    return TM_ERR_INVALID;
  }
  const uint8_t* target = c->nbufs == 3 ? static_cast<const uint8_t*>(c->bufs[2].data) : nullptr;
  int rc = tm_report(target, static_cast<const uint8_t*>(c->bufs[0].data), static_cast<uint8_t*>(c->bufs[1].data));
  c->scalars[0] = static_cast<uint64_t>(rc);
  if (rc == TM_OK) c->bufs[1].out_size = TM_REPORT_SIZE;
  return TM_OK;
}
TM_ECALL(kEcallReport, report);

// scalars[0] = tm_verify_report(bufs[0]).
int verify_report(tm_call* c) {
  if (c->nbufs != 1 || c->bufs[0].size != TM_REPORT_SIZE) return TM_ERR_INVALID;
  c->scalars[0] = static_cast<uint64_t>(tm_verify_report(static_cast<const uint8_t*>(c->bufs[0].data)));
  return TM_OK;
}
TM_ECALL(kEcallVerifyReport, verify_report);

// EGETKEY: key name scalars[0], policy scalars[1], KEYID bufs[0] (32 bytes),
// key into bufs[1] (16 bytes); scalars[2] = tm_get_key's code.
int get_key(tm_call* c) {
  if (c->nbufs != 2 || c->bufs[0].size != TM_KEY_ID_SIZE || c->bufs[1].size != TM_KEY_SIZE) return TM_ERR_INVALID;
  int rc = tm_get_key(static_cast<uint16_t>(c->scalars[0]), static_cast<uint16_t>(c->scalars[1]),
                      static_cast<const uint8_t*>(c->bufs[0].data), static_cast<uint8_t*>(c->bufs[1].data));
  c->scalars[2] = static_cast<uint64_t>(rc);
  if (rc == TM_OK) c->bufs[1].out_size = TM_KEY_SIZE;
  return TM_OK;
}
TM_ECALL(kEcallGetKey, get_key);


// ---- The C and C++ library inside the enclave ---------------------------

int libc_functions(tm_call* c) {
  if (c->nbufs != 1 || c->bufs[0].size < 128) return TM_ERR_INVALID;
  int values[] = {5, 3, 9, 1, 7};
  qsort(values, 5, sizeof(int), [](const void* a, const void* b) {
    return *static_cast<const int*>(a) - *static_cast<const int*>(b);
  });
  double parsed = strtod("2.5e1", nullptr);
  int n = snprintf(static_cast<char*>(c->bufs[0].data), c->bufs[0].size, "%d%d%d%d%d %.4f %g %s %#x",
                   values[0], values[1], values[2], values[3], values[4], sqrt(2.0), parsed, "ok", 255);
  if (n < 0) return TM_ERR_APP;
  c->bufs[0].out_size = static_cast<size_t>(n);
  // Single characters: GCC turns printf("\n") into putchar, which musl's
  // libc.a implements with a futex; the runtime supplies its own.
  printf("\n");
  putchar('\n');
  fputc('\n', stdout);
  putc('\n', stdout);
  return TM_OK;
}
TM_ECALL(kEcallLibc, libc_functions);

int time_and_random(tm_call* c) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return TM_ERR_APP;
  c->scalars[0] = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  if (tm_random(&c->scalars[1], 8) != TM_OK || getentropy(&c->scalars[2], 8) != 0) return TM_ERR_APP;
  return TM_OK;
}
TM_ECALL(kEcallTimeRandom, time_and_random);

struct Counter {
  int value;
  Counter() : value(++constructions) {}
  static int constructions;
};
int Counter::constructions = 0;

int cxx_features(tm_call* c) {
  static Counter once;  // guarded static-local initialisation
  std::vector<uint64_t> v;
  for (uint64_t i = c->scalars[0]; i > 0; --i) v.push_back(i);
  std::sort(v.begin(), v.end());
  auto owned = std::make_unique<uint64_t[]>(v.size() + 1);
  uint64_t sum = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0 && v[i - 1] > v[i]) return TM_ERR_APP;
    owned[i] = v[i];
    sum += owned[i];
  }
  c->scalars[1] = sum;
  c->scalars[2] = static_cast<uint64_t>(Counter::constructions + once.value - 1);
  return TM_OK;
}
TM_ECALL(kEcallCxx, cxx_features);

// Recurses until the stack's guard page stops it (the limit is far beyond
// any stack an enclave may have).
__attribute__((noinline)) uint64_t recurse(volatile uint8_t* prev, uint64_t depth) {
  volatile uint8_t frame[512];
  frame[0] = static_cast<uint8_t>(depth);
  if (prev) frame[1] = prev[0];
  if (depth > (uint64_t{1} << 40)) return frame[1];
  return recurse(frame, depth + 1) + frame[1];
}
int stack_overflow(tm_call* c) {
  c->scalars[0] = recurse(nullptr, 0);
  return TM_OK;
}
TM_ECALL(kEcallStackOverflow, stack_overflow);


// ---- Processes sharing the enclave ------------------------------------------

tm_mutex g_shared_mutex = TM_MUTEX_INIT;

int leak(tm_call* c) {
  if (c->scalars[0]) {
    auto* p = static_cast<uint8_t*>(malloc(c->scalars[0]));
    if (!p) return TM_ERR_NO_MEMORY;
    memset(p, 0x5a, c->scalars[0]);  // never freed: the process's arena must take it back
  }
  c->scalars[1] = tm_process_heap_used();
  c->scalars[2] = tm_heap_used();
  c->scalars[3] = tm_process_id();
  return TM_OK;
}
TM_ECALL(kEcallLeak, leak);

int lock_and_spin(tm_call*) {
  tm_mutex_lock(&g_shared_mutex);
  for (;;) __builtin_ia32_pause();
}
TM_ECALL(kEcallLockAndSpin, lock_and_spin);

int try_lock(tm_call* c) {
  c->scalars[0] = static_cast<uint64_t>(tm_mutex_trylock(&g_shared_mutex));
  if (c->scalars[0]) tm_mutex_unlock(&g_shared_mutex);
  return TM_OK;
}
TM_ECALL(kEcallTryLock, try_lock);

int app_error(tm_call* c) {
  char msg[128] = {0};
  if (c->nbufs >= 1 && c->bufs[0].direction == TM_BUF_IN) {
    size_t n = c->bufs[0].size < sizeof msg - 1 ? c->bufs[0].size : sizeof msg - 1;
    memcpy(msg, c->bufs[0].data, n);
    return tm_app_error(static_cast<int32_t>(c->scalars[0]), msg);
  }
  return tm_app_error(static_cast<int32_t>(c->scalars[0]), nullptr);
}
TM_ECALL(kEcallAppError, app_error);

int return_status(tm_call* c) { return static_cast<int>(c->scalars[0]); }
TM_ECALL(kEcallReturnStatus, return_status);

int app_error_long(tm_call*) {
  char big[601];
  memset(big, 'x', 600);
  big[600] = 0;
  return tm_app_errorf(-7, "long:%s", big);
}
TM_ECALL(kEcallAppErrorLong, app_error_long);

int app_error_utf8(tm_call*) {
  char msg[256];
  memset(msg, 'x', 246);
  memcpy(msg + 246, "\xe2\x82\xac", 4);  // U+20AC and the NUL: bytes 246..248
  return tm_app_error(1, msg);
}
TM_ECALL(kEcallAppErrorUtf8, app_error_utf8);

int double_free(tm_call*) {
  // volatile: the compiler would otherwise drop the unused malloc/free pairs.
  void* volatile p = malloc(64);
  void* volatile q = malloc(64);
  void* volatile guard = malloc(64);  // keeps q from merging with what follows
  free(p);
  free(q);  // merges into p's free block: q's header is now inside it
  free(q);  // must be caught, not corrupt the heap
  free(guard);
  return TM_OK;
}
TM_ECALL(kEcallDoubleFree, double_free);

// ---- Shared and per-process memory ----
// Deliberately a shared global pointer: with kind 0 it points into the
// stashing process's arena, the bug the debug report names.
char* g_stash = nullptr;
size_t g_stash_len = 0;
tm_mutex g_stash_mutex = TM_MUTEX_INIT;

int stash(tm_call* c) {
  if (c->nbufs != 1 || c->bufs[0].direction != TM_BUF_IN) return TM_ERR_INVALID;
  const size_t n = c->bufs[0].size;
  char* p = static_cast<char*>(c->scalars[0] ? tm_shared_malloc(n) : malloc(n));
  if (!p) return TM_ERR_NO_MEMORY;
  memcpy(p, c->bufs[0].data, n);
  tm_mutex_lock(&g_stash_mutex);
  g_stash = p;  // the previous stash is dropped (it may belong to an ended process)
  g_stash_len = n;
  tm_mutex_unlock(&g_stash_mutex);
  return TM_OK;
}
TM_ECALL(kEcallStash, stash);

int peek(tm_call* c) {
  if (c->nbufs != 1 || c->bufs[0].direction != TM_BUF_OUT) return TM_ERR_INVALID;
  tm_mutex_lock(&g_stash_mutex);
  const size_t n = g_stash_len < c->bufs[0].size ? g_stash_len : c->bufs[0].size;
  if (g_stash) memcpy(c->bufs[0].data, g_stash, n);
  c->bufs[0].out_size = g_stash ? n : 0;
  c->scalars[0] = static_cast<uint64_t>(tm_is_shared_memory(g_stash));
  c->scalars[1] = g_stash_len;
  tm_mutex_unlock(&g_stash_mutex);
  return TM_OK;
}
TM_ECALL(kEcallPeek, peek);

int free_stash(tm_call* c) {
  tm_mutex_lock(&g_stash_mutex);
  char* p = g_stash;
  tm_mutex_unlock(&g_stash_mutex);
  // scalars[0]: 0 free, 1 realloc to 1 MiB, 2 tm_shared_realloc to 1 MiB;
  // each aborts this call when p is another live process's memory.
  if (c->scalars[0] == 1) {
    p = static_cast<char*>(realloc(p, 1 << 20));
  } else if (c->scalars[0] == 2) {
    p = static_cast<char*>(tm_shared_realloc(p, 1 << 20));
  } else {
    free(p);
  }
  tm_mutex_lock(&g_stash_mutex);
  if (g_stash == p) g_stash = nullptr;
  tm_mutex_unlock(&g_stash_mutex);
  return TM_OK;
}
TM_ECALL(kEcallFreeStash, free_stash);

using teemate::trusted::shared_map;
using teemate::trusted::shared_string;
shared_map<shared_string, shared_string>* g_map = nullptr;
tm_mutex g_map_mutex = TM_MUTEX_INIT;

int map_put(tm_call* c) {
  if (c->nbufs != 2) return TM_ERR_INVALID;
  tm_mutex_lock(&g_map_mutex);
  if (!g_map) g_map = teemate::trusted::shared_new<shared_map<shared_string, shared_string>>();
  shared_string key(static_cast<const char*>(c->bufs[0].data), c->bufs[0].size);
  (*g_map)[key] = shared_string(static_cast<const char*>(c->bufs[1].data), c->bufs[1].size);
  tm_mutex_unlock(&g_map_mutex);
  return TM_OK;
}
TM_ECALL(kEcallMapPut, map_put);

int map_get(tm_call* c) {
  if (c->nbufs != 2 || c->bufs[1].direction != TM_BUF_OUT) return TM_ERR_INVALID;
  tm_mutex_lock(&g_map_mutex);
  shared_string key(static_cast<const char*>(c->bufs[0].data), c->bufs[0].size);
  auto it = g_map ? g_map->find(key) : decltype(g_map->end()){};
  if (!g_map || it == g_map->end()) {
    tm_mutex_unlock(&g_map_mutex);
    return tm_app_errorf(404, "no entry for key '%.*s'", static_cast<int>(key.size()), key.data());
  }
  const size_t n = it->second.size() < c->bufs[1].size ? it->second.size() : c->bufs[1].size;
  memcpy(c->bufs[1].data, it->second.data(), n);
  c->bufs[1].out_size = n;
  tm_mutex_unlock(&g_map_mutex);
  return TM_OK;
}
TM_ECALL(kEcallMapGet, map_get);

int map_fill(tm_call* c) {
  if (c->nbufs != 1) return TM_ERR_INVALID;
  tm_mutex_lock(&g_map_mutex);
  if (!g_map) g_map = teemate::trusted::shared_new<shared_map<shared_string, shared_string>>();
  const shared_string prefix(static_cast<const char*>(c->bufs[0].data), c->bufs[0].size);
  for (uint64_t i = 0; i < c->scalars[0]; ++i) {
    char n[24];
    snprintf(n, sizeof n, "%llu", static_cast<unsigned long long>(i));
    shared_string key = prefix;
    key.append(n);
    (*g_map)[key].assign(1, 'v');  // not = "v": GCC 12 -Wrestrict false positive
  }
  tm_mutex_unlock(&g_map_mutex);
  return TM_OK;
}
TM_ECALL(kEcallMapFill, map_fill);

int shared_api(tm_call* c) {
  bool ok = true;
  auto* a = static_cast<uint8_t*>(tm_shared_calloc(3, 100));
  ok = ok && a && tm_is_shared_memory(a);
  for (int i = 0; a && i < 300; ++i) ok = ok && a[i] == 0;
  ok = ok && tm_shared_calloc(SIZE_MAX / 2, 4) == nullptr;               // overflow
  ok = ok && tm_shared_aligned_alloc(3, 8) == nullptr;                   // not a power of two
  void* al = tm_shared_aligned_alloc(4096, 10);
  ok = ok && al && (reinterpret_cast<uintptr_t>(al) & 4095) == 0;
  tm_shared_free(al);
  // realloc of per-process memory gives shared memory with the same bytes.
  auto* mine = static_cast<uint8_t*>(malloc(64));
  ok = ok && mine;
  if (mine) memset(mine, 0x42, 64);
  auto* moved = static_cast<uint8_t*>(tm_shared_realloc(mine, 128));
  ok = ok && moved && tm_is_shared_memory(moved);
  for (int i = 0; moved && i < 64; ++i) ok = ok && moved[i] == 0x42;
  ok = ok && tm_shared_realloc(moved, 0) == nullptr;  // frees
  tm_shared_free(nullptr);
  tm_shared_free(a);
  int on_stack = 0;
  // Per-process memory is not shared when the thread has a process context.
  void* per = malloc(16);
  ok = ok && per && (tm_process_id() == 0 ? tm_is_shared_memory(per) == 1 : tm_is_shared_memory(per) == 0);
  free(per);
  ok = ok && tm_is_shared_memory(&on_stack) == 1 && tm_is_shared_memory(reinterpret_cast<void*>(16)) == 0;
  c->scalars[0] = ok ? 1 : 0;
  return TM_OK;
}
TM_ECALL(kEcallSharedApi, shared_api);

// ---- POSIX time, randomness and memory ----
uint64_t ns_of(const timespec& t) { return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + t.tv_nsec; }

int posix_time_memory(tm_call* c) {
  uint64_t failed = 0;
  auto check = [&](int bit, bool ok) {
    if (!ok) failed |= uint64_t{1} << bit;
  };
  timespec a{}, b{};
  check(0, clock_gettime(CLOCK_MONOTONIC, &a) == 0);
  check(1, clock_gettime(CLOCK_MONOTONIC, &b) == 0 && ns_of(b) >= ns_of(a));
  errno = 0;
  check(2, clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a) == -1 && errno == EINVAL);
  timeval tv{};
  check(3, gettimeofday(&tv, nullptr) == 0 && tv.tv_sec > 1600000000 && tv.tv_usec < 1000000);
  check(4, time(nullptr) >= tv.tv_sec);
  timespec req{0, 20 * 1000 * 1000}, t0{}, t1{};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  check(5, nanosleep(&req, nullptr) == 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  c->scalars[1] = ns_of(t1) - ns_of(t0);
  timespec bad{0, 1000000000};
  errno = 0;
  check(6, nanosleep(&bad, nullptr) == -1 && errno == EINVAL);
  check(7, usleep(1000) == 0);
  uint8_t r1[64] = {}, r2[64] = {};
  check(8, getrandom(r1, sizeof r1, 0) == 64 && getrandom(r2, sizeof r2, GRND_NONBLOCK) == 64 &&
               memcmp(r1, r2, sizeof r1) != 0);
  errno = 0;
  check(9, getrandom(r1, 8, 0x80) == -1 && errno == EINVAL);
  errno = 0;
  check(10, getentropy(r1, 257) == -1 && errno == EIO);
  // Anonymous mappings.
  auto* m = static_cast<uint8_t*>(mmap(nullptr, 100000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  check(11, m != MAP_FAILED && (reinterpret_cast<uintptr_t>(m) & 4095) == 0);
  bool zero = m != MAP_FAILED;
  for (size_t i = 0; zero && i < 100000; ++i) zero = m[i] == 0;
  check(12, zero);
  if (m != MAP_FAILED) {
    memset(m, 0x77, 100000);
    check(13, mprotect(m, 4096, PROT_READ) == 0);
    errno = 0;
    check(14, mprotect(m, 4096, PROT_READ | PROT_EXEC) == -1 && errno == EACCES);
    errno = 0;
    check(15, munmap(m + 4096, 4096) == -1 && errno == EINVAL);  // not a whole mapping
    errno = 0;
    check(16, munmap(m, 4096) == -1 && errno == EINVAL);         // partial
    check(17, munmap(m, 100000) == 0);
    errno = 0;
    check(18, munmap(m, 100000) == -1 && errno == EINVAL);       // twice
  }
  uint8_t on_stack[8192];
  errno = 0;
  check(19, munmap(on_stack + (4096 - reinterpret_cast<uintptr_t>(on_stack) % 4096), 4096) == -1 && errno == EINVAL);
  errno = 0;
  check(20, mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, 3, 0) == MAP_FAILED && errno == ENODEV);
  errno = 0;
  check(21, mmap(nullptr, size_t{1} << 40, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED &&
                errno == ENOMEM);
  errno = 0;
  check(22, mmap(nullptr, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL);
  // A large allocation, then memory given back for the next.
  for (int round = 0; round < 3; ++round) {
    void* big = mmap(nullptr, 16u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(23, big != MAP_FAILED && munmap(big, 16u << 20) == 0);
  }
  c->scalars[0] = failed;
  return TM_OK;
}
TM_ECALL(kEcallPosixTimeMemory, posix_time_memory);

// ---- Sockets ----
int sock_listen(tm_call* c) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return tm_app_errorf(errno, "socket: errno %d", errno);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0) {
    return tm_app_errorf(errno, "bind/listen: errno %d", errno);
  }
  socklen_t len = sizeof a;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || len != sizeof a) {
    return tm_app_errorf(errno, "getsockname: errno %d", errno);
  }
  c->scalars[0] = static_cast<uint64_t>(fd);
  c->scalars[1] = ntohs(a.sin_port);
  return TM_OK;
}
TM_ECALL(kEcallSockListen, sock_listen);

int sock_serve(tm_call* c) {
  const int fd = static_cast<int>(c->scalars[0]);
  pollfd p{fd, POLLIN, 0};
  c->scalars[1] = poll(&p, 1, 10000) == 1 && (p.revents & POLLIN) ? 1 : 0;
  sockaddr_in peer{};
  socklen_t len = sizeof peer;
  const int cfd = accept(fd, reinterpret_cast<sockaddr*>(&peer), &len);
  if (cfd < 0) return tm_app_errorf(errno, "accept: errno %d", errno);
  if (len != sizeof peer || peer.sin_family != AF_INET) return tm_app_error(1, "accept: bad peer address");
  char line[256];
  size_t n = 0;
  while (n < sizeof line) {
    const ssize_t r = read(cfd, line + n, sizeof line - n);
    if (r <= 0) break;
    n += static_cast<size_t>(r);
    if (memchr(line, '\n', n)) break;
  }
  for (size_t i = 0; i < n; ++i) line[i] = static_cast<char>(toupper(static_cast<unsigned char>(line[i])));
  const bool sent = write(cfd, line, n) == static_cast<ssize_t>(n);
  shutdown(cfd, SHUT_WR);
  close(cfd);
  return sent ? TM_OK : tm_app_errorf(errno, "write: errno %d", errno);
}
TM_ECALL(kEcallSockServe, sock_serve);

int sock_connect(tm_call* c) {
  if (c->nbufs != 1 || c->bufs[0].direction != TM_BUF_OUT) return TM_ERR_INVALID;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return tm_app_errorf(errno, "socket: errno %d", errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(c->scalars[0]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return tm_app_errorf(errno, "connect: errno %d", errno);
  }
  if (send(fd, "ping\n", 5, 0) != 5) return tm_app_errorf(errno, "send: errno %d", errno);
  size_t n = 0;
  while (n < c->bufs[0].size) {
    const ssize_t r = recv(fd, static_cast<char*>(c->bufs[0].data) + n, c->bufs[0].size - n, 0);
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  close(fd);
  c->bufs[0].out_size = n;
  return TM_OK;
}
TM_ECALL(kEcallSockConnect, sock_connect);

int sock_close(tm_call* c) { return close(static_cast<int>(c->scalars[0])) == 0 ? TM_OK : tm_app_error(errno, "close"); }
TM_ECALL(kEcallSockClose, sock_close);

int sock_errors(tm_call* c) {
  uint64_t failed = 0;
  auto check = [&](int bit, bool ok) {
    if (!ok) failed |= uint64_t{1} << bit;
  };
  char b[8];
  errno = 0;
  check(0, close(-1) == -1 && errno == EBADF);
  errno = 0;
  check(1, recv(987654, b, sizeof b, 0) == -1 && errno == EBADF);
  errno = 0;
  check(2, socket(12345, SOCK_STREAM, 0) == -1 && errno == EAFNOSUPPORT);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  check(3, fd >= 0);
  int v = 0;
  // A length larger than the value: only the value's bytes are written (a
  // stack variable next to it must survive), as the kernel does.
  struct {
    int v;
    int after;
  } guarded{0, 0x5a5a5a5a};
  socklen_t len = 100000;
  check(4, getsockopt(fd, SOL_SOCKET, SO_TYPE, &guarded.v, &len) == 0 && len == sizeof(int) &&
               guarded.v == SOCK_STREAM && guarded.after == 0x5a5a5a5a);
  len = sizeof v;
  check(5, getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_STREAM && len == sizeof v);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(1);  // nothing listens on port 1
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  errno = 0;
  check(6, connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == -1 && errno == ECONNREFUSED);
  errno = 0;
  check(7, sendto(fd, b, 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) == -1 && errno == EOPNOTSUPP);
  check(8, close(fd) == 0);
  errno = 0;
  check(9, close(fd) == -1 && errno == EBADF);
  pollfd none{987654, POLLIN, 0};
  check(10, poll(&none, 1, 0) == 1 && (none.revents & POLLNVAL));
  // Non-blocking: a recv with nothing to read says EAGAIN instead of waiting.
  const int nb = socket(AF_INET, SOCK_DGRAM, 0);
  check(11, nb >= 0 && fcntl(nb, F_SETFL, fcntl(nb, F_GETFL) | O_NONBLOCK) == 0 && (fcntl(nb, F_GETFL) & O_NONBLOCK));
  sockaddr_in here{};
  here.sin_family = AF_INET;
  here.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  check(12, bind(nb, reinterpret_cast<sockaddr*>(&here), sizeof here) == 0);
  errno = 0;
  check(13, recv(nb, b, sizeof b, 0) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK));
  errno = 0;
  check(14, fcntl(nb, F_SETLK, 0) == -1 && errno == EINVAL);
  close(nb);
  // Descriptors the enclave did not open are not its to use or close: the
  // host's stdio, the enclave's own memory descriptors, anything else.
  bool all_refused = true;
  for (int fd = 0; fd < 64; ++fd) {
    errno = 0;
    all_refused = all_refused && close(fd) == -1 && errno == EBADF;
  }
  check(15, all_refused);
  errno = 0;
  check(16, write(3, "x", 1) == -1 && errno == EBADF);
  errno = 0;
  check(17, read(0, b, 1) == -1 && errno == EBADF);
  check(18, write(1, "", 0) == 0);
  // A big transfer is a short count, not an error.
  int pair_fd = socket(AF_INET, SOCK_STREAM, 0);
  static char big[1 << 20];
  errno = 0;
  const ssize_t sent = send(pair_fd, big, sizeof big, MSG_DONTWAIT);
  check(19, sent == -1 && errno != EMSGSIZE);  // not connected: EPIPE/ENOTCONN, never EMSGSIZE
  close(pair_fd);
  c->scalars[0] = failed;
  return TM_OK;
}
TM_ECALL(kEcallSockErrors, sock_errors);

int sock_recv(tm_call* c) {
  char b[8];
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);  // ours; the host's answers to recv are the test's
  errno = 0;
  c->scalars[0] = static_cast<uint64_t>(recv(fd, b, sizeof b, 0));
  c->scalars[1] = static_cast<uint64_t>(errno);
  close(fd);
  return TM_OK;
}
TM_ECALL(kEcallSockRecv, sock_recv);
}  // namespace

// ---- threads and waiting across processes ----------------------------------
volatile uint32_t g_xflag;

int wait_flag(tm_call* c) {
  const uint32_t want = static_cast<uint32_t>(c->scalars[0]);
  const int64_t timeout = static_cast<int64_t>(c->scalars[1]);
  int rc = 0;
  uint32_t v;
  while ((v = __atomic_load_n(&g_xflag, __ATOMIC_ACQUIRE)) != want && rc == 0) rc = tm_wait(&g_xflag, v, timeout);
  c->scalars[0] = static_cast<uint64_t>(rc);
  c->scalars[1] = __atomic_load_n(&g_xflag, __ATOMIC_ACQUIRE);
  return TM_OK;
}
TM_ECALL(kEcallWaitFlag, wait_flag);

int set_flag(tm_call* c) {
  __atomic_store_n(&g_xflag, static_cast<uint32_t>(c->scalars[0]), __ATOMIC_RELEASE);
  tm_wake(&g_xflag);
  return TM_OK;
}
TM_ECALL(kEcallSetFlag, set_flag);

// Threads hold their TCS until every pthread_create of the call is done, so
// that the count of threads that found a free TCS does not depend on timing.
volatile uint32_t g_spawn_go;

void* index_plus_one(void* arg) {
  while (!__atomic_load_n(&g_spawn_go, __ATOMIC_ACQUIRE)) tm_wait(&g_spawn_go, 0, -1);
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(arg) + 1);
}

int spawn_threads(tm_call* c) {
  const uint64_t n = c->scalars[0] < 16 ? c->scalars[0] : 16;
  pthread_t t[16];
  bool made[16] = {};
  uint64_t created = 0, sum = 0, errors = 0;
  __atomic_store_n(&g_spawn_go, 0u, __ATOMIC_RELEASE);
  for (uint64_t i = 0; i < n; ++i) {
    const int rc = pthread_create(&t[i], nullptr, index_plus_one, reinterpret_cast<void*>(i));
    made[i] = rc == 0;
    created += made[i];
    errors += !made[i];
  }
  __atomic_store_n(&g_spawn_go, 1u, __ATOMIC_RELEASE);
  tm_wake(&g_spawn_go);
  for (uint64_t i = 0; i < n; ++i) {
    void* r = nullptr;
    if (made[i] && pthread_join(t[i], &r) == 0) sum += reinterpret_cast<uintptr_t>(r);
  }
  c->scalars[0] = created;
  c->scalars[1] = sum;
  c->scalars[2] = errors;
  return TM_OK;
}
TM_ECALL(kEcallSpawnThreads, spawn_threads);

int main(int argc, char** argv) {
  (void)argv;
  return argc;
}
