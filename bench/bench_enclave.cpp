// The bench enclave: an empty ECALL and an ECALL making N empty OCALLs (for
// teemate-bench-ecall), and the payload of the 16/64/256 MiB build images.
// It must never do work beyond what a benchmark means to measure.
#include <stdint.h>

#include "teemate/trusted/runtime.h"
#include "bench_enclave_ids.h"

namespace {

int nop(tm_call*) { return TM_OK; }
TM_ECALL(kBenchEcallNop, nop);

// OCALL cost = (time(N) - time(0)) / N on the host side.
int ocall_loop_with(tm_call* c, int (*ocall)(tm_call*)) {
  const uint64_t n = c->scalars[0];
  uint64_t done = 0;
  for (; done < n; ++done) {
    tm_call o{};
    o.id = kBenchOcallNop;
    const int rc = ocall(&o);
    if (rc != TM_OK) {
      c->scalars[1] = done;
      return rc;
    }
  }
  c->scalars[1] = done;
  return TM_OK;
}
int ocall_loop(tm_call* c) { return ocall_loop_with(c, tm_ocall); }
int switchless_ocall_loop(tm_call* c) { return ocall_loop_with(c, tm_ocall_switchless); }
TM_ECALL(kBenchEcallOcallLoop, ocall_loop);
TM_ECALL(kBenchEcallSwitchlessOcallLoop, switchless_ocall_loop);

}  // namespace

int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
  return 0;
}
