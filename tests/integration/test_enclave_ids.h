// ECALL/OCALL ids of tests/enclaves/test_enclave.cpp, shared with the host
// tests. Plain constants: included on both sides of the boundary.
#pragma once

enum TestEcall : unsigned {
  kEcallEcho = 0x100,
  kEcallAdd = 0x101,
  kEcallNested = 0x102,
  kEcallNullDeref = 0x103,
  kEcallDivide = 0x104,
  kEcallHandledException = 0x105,
  kEcallCount = 0x106,
  kEcallSpin = 0x107,
  kEcallRelease = 0x108,
  kEcallOcallHostPointer = 0x109,
  kEcallHeapStats = 0x10a,
  kEcallAbort = 0x10b,
  kEcallSealRoundTrip = 0x10c,
  kEcallUnseal = 0x10d,
  kEcallReport = 0x10e,
  // Sealing and reports, continued (ids 0x120.. kept for them).
  kEcallVerifyReport = 0x120,
  kEcallGetKey = 0x121,
  // The C and C++ library inside the enclave.
  kEcallLibc = 0x130,        // bufs[0] out: text made with snprintf/strtod/sqrt/qsort
  kEcallTimeRandom = 0x131,  // scalars[0] out: realtime ns; [1], [2] out: two random words
  kEcallCxx = 0x132,         // scalars[0] in: n; scalars[1] out: sum of a sorted vector; [2] out: static-init count
  kEcallStackOverflow = 0x133,
  // Processes sharing the enclave.
  kEcallLeak = 0x140,         // scalars[0] in: bytes to malloc and never free; [1] out: process arena
                              // bytes in use; [2] out: global heap bytes in use; [3] out: process id
  kEcallLockAndSpin = 0x141,  // takes the shared tm_mutex and spins forever
  kEcallTryLock = 0x142,      // scalars[0] out: 1 if the shared tm_mutex could be taken (then released)
  // Errors.
  kEcallAppError = 0x150,     // scalars[0] in: app code; bufs[0] in (optional): message; fails with it
  kEcallReturnStatus = 0x151, // scalars[0] in: the status to return as is
  kEcallAppErrorLong = 0x152, // fails via tm_app_errorf with a 600-byte message
  kEcallAppErrorUtf8 = 0x153, // fails with 246 'x' and a euro sign (cut at the 247-byte limit)
  kEcallDoubleFree = 0x154,   // frees a block that was merged into its free neighbour: must abort
  // Shared and per-process memory.
  kEcallStash = 0x160,        // scalars[0] in: 1 shared (tm_shared_malloc), 0 per-process (malloc);
                              // bufs[0] in: text, kept in a copy that the global g_stash points to
  kEcallPeek = 0x161,         // bufs[0] out: the bytes g_stash points to now (as many as were stashed);
                              // scalars[0] out: tm_is_shared_memory(g_stash); [1] out: stashed length
  kEcallMapPut = 0x162,       // bufs[0] in: key; bufs[1] in: value; into a global shared_map
  kEcallMapGet = 0x163,       // bufs[0] in: key; bufs[1] out: value; app error 404 when absent
  kEcallSharedApi = 0x164,    // exercises tm_shared_* edge cases; scalars[0] out: 1 when all held
  kEcallMapFill = 0x165,      // bufs[0] in: key prefix; scalars[0] in: n; puts prefix+i = "v" for i < n
  kEcallFreeStash = 0x166,    // free(g_stash) (outside the stash lock), then clears it: a block of
                              // another process's arena must abort this call and stay intact
  // POSIX services.
  kEcallPosixTimeMemory = 0x170,  // scalars[0] out: bit mask of failed checks (0: all held);
                                  // [1] out: measured ns of a 20 ms nanosleep
  kEcallSockListen = 0x171,   // scalars[0] out: listening fd on 127.0.0.1; [1] out: its port
  kEcallSockServe = 0x172,    // scalars[0] in: listening fd; accepts one client, echoes one line upper-cased;
                              // [1] out: 1 if poll saw the connection first
  kEcallSockConnect = 0x173,  // scalars[0] in: port; sends "ping\n" to 127.0.0.1:port; bufs[0] out: the reply
  kEcallSockClose = 0x174,    // scalars[0] in: fd
  // Threads and waiting across processes (shared_enclave_test's threads cases):
  kEcallWaitFlag = 0x180,     // scalars[0] in: value to wait for on a shared word; [1] in: timeout ns;
                              // [0] out: 0 or ETIMEDOUT; [1] out: the word's value
  kEcallSetFlag = 0x181,      // scalars[0] in: value to store into the shared word, then tm_wake
  kEcallSpawnThreads = 0x182, // scalars[0] in: threads to pthread_create; [0] out: created; [1] out: sum of
                              // their results (each returns its index + 1); [2] out: pthread_create errors
  kEcallSockErrors = 0x175,   // scalars[0] out: bit mask of failed error checks (0: all held)
  kEcallSockRecv = 0x176,     // recv(scalars[0] fd, 8 bytes): [0] out: the result; [1] out: errno
  // Switchless calls.
  kEcallSwitchlessOcalls = 0x190,  // scalars[0] in: n; makes n kOcallSwitchlessAdd with tm_ocall_switchless;
                                   // [0] out: the counter after them; [1] out: answers that were wrong
  kEcallDetachedSwitchless = 0x191,  // scalars[0] in: n; a detached pthread makes n kOcallSwitchlessAdd
                                     // with tm_ocall_switchless 200 ms later
};

enum TestOcall : unsigned {
  kOcallNested = 0x200,
  kOcallSwitchlessAdd = 0x201,  // scalars[0] in: i; bufs[0] inout: u64 counter += i; scalars[1] out: 2 * i
};
