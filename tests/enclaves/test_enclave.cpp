// The test enclave: ECALLs that exercise the runtime from inside: echo,
// nested OCALL/ECALL, faults, a handled exception, busy-TCS and threading
// helpers, pointer checks. Each ECALL id is mirrored in
// tests/integration/test_enclave_ids.h.
#include <stdint.h>
#include <string.h>

#include <atomic>

#include "teemate/trusted.h"
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

}  // namespace

int main(int argc, char** argv) {
  (void)argv;
  return argc;
}
