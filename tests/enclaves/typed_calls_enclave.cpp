// The ECALLs of tests/enclaves/typed_calls.edl: small, checkable functions
// for tests/integration/typed_calls_test.cpp, and one that makes the
// interface's OCALLs and reports what the host answered.
#include <string.h>

#include "teemate/trusted/runtime.h"
#include "typed_calls_t.h"
#include "typed_more_t.h"

int64_t tc_scalars(int8_t a, uint16_t b, int32_t c, uint64_t d, bool e, double f, float g, char h) {
  return static_cast<int64_t>(a) + b + c + static_cast<int64_t>(d) + (e ? 1000 : 0) + static_cast<int64_t>(f * 10) +
         static_cast<int64_t>(g * 100) + h;
}

void tc_nothing(void) {}

size_t tc_sum(const uint32_t* values, size_t n) {
  size_t total = 0;
  for (size_t i = 0; values && i < n; ++i) total += values[i];
  return total;
}

int tc_reverse(const uint8_t* src, uint8_t* dst, size_t len) {
  if (!src || !dst) return -1;
  for (size_t i = 0; i < len; ++i) dst[i] = src[len - 1 - i];
  return static_cast<int>(len);
}

int tc_increment(int32_t* four) {
  for (int i = 0; i < 4; ++i) four[i] += i + 1;
  return 0;
}

size_t tc_strlen(const char* s) { return s ? strlen(s) : static_cast<size_t>(-1); }

int tc_fixed(void* sixteen) {
  memset(sixteen, 0xab, 16);
  return 16;
}

int tc_optional(const uint8_t* maybe, uint64_t* seen) {
  uint64_t v = 0;
  if (maybe) memcpy(&v, maybe, 8);
  if (seen) *seen = v;
  return maybe ? 1 : 0;
}

uint64_t tc_address(void* host_pointer) { return reinterpret_cast<uint64_t>(host_pointer); }

int tc_call_host(const char* greeting, char* answer, size_t cap, int32_t* host_ret) {
  int32_t ret = 0;
  int rc = host_greet(&ret, greeting, answer, cap);
  if (rc != TM_OK) return rc;
  if (host_ret) *host_ret = ret;
  rc = host_note(static_cast<uint32_t>(ret) * 2);
  if (rc != TM_OK) return rc;
  return TM_OK;
}

int tc_app_error(int code) {
  // A typed ECALL can still fail with the application's own code.
  return tm_app_errorf(code, "typed call refused with %d", code);
}

int tc_call_lie(uint64_t* got) {
  int ret = 0;
  return host_lie(&ret, got);
}

size_t tc_count_true(const bool* flags, size_t n) {
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) count += flags[i] ? 1 : 0;
  return count;
}

// Returns host_flags's status: the stub refuses an answer byte other than 0 or 1.
int tc_ask_flags(bool* flags) { return host_flags(flags); }

// typed_more.edl: a second interface in the same enclave.
int more_double_it(int x) {
  int tripled = 0;
  if (host_triple(&tripled, x) != TM_OK) return -1;
  return 2 * tripled;
}

// (x + 1) * 4, the + 1 made by the host through a switchless OCALL.
int more_quadruple_fast(int x) {
  int plus_one = 0;
  if (host_plus_one_fast(&plus_one, x) != TM_OK) return -1;
  return 4 * plus_one;
}
