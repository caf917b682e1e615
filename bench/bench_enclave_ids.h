// ECALL/OCALL ids of bench/bench_enclave.cpp, shared with the host-side
// benchmarks. Plain constants only: included on both sides of the boundary,
// so it must never include a host or enclave header.
#pragma once

enum BenchEcall : unsigned {
  kBenchEcallNop = 0x100,        // does nothing
  kBenchEcallOcallLoop = 0x101,  // scalars[0] in: N; makes N kBenchOcallNop; scalars[1] out: OCALLs done
  kBenchEcallSwitchlessOcallLoop = 0x102,  // the same with tm_ocall_switchless
};

enum BenchOcall : unsigned {
  kBenchOcallNop = 0x200,  // no arguments; the host handler returns 0
};
