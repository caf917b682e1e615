// The contract between the host runtime and the trusted runtime: the layout
// metadata page the packer writes into every image, the register protocol of
// EENTER/EEXIT, and the call frames that carry ECALL/OCALL arguments in host
// memory. Plain C-compatible data only; included by both sides. Never put
// host or enclave behaviour here, and never a pointer the other side would
// have to dereference blindly: every address in a frame is checked by the
// enclave before use.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "teemate/status_codes.h"

namespace teemate::abi {

inline constexpr uint64_t kMetaMagic = 0x31304154454d4d54ull;  // "TMMETA01"
// 2: CallFrame carries `auth` (control token or lease token); control ECALLs.
// 3: CallFrame carries `app_error` (the application error channel).
inline constexpr uint32_t kAbiVersion = 3;

// Written by the packer into the page right after the ELF image (the first
// page at or after the end of the highest PT_LOAD segment). Measured and
// read-only: the enclave trusts it because MRENCLAVE covers it.
//
// Per-thread block i starts at threads_offset + i * thread_stride and holds,
// in order: TCS (1 page), SSA (nssa * ssa_frame_pages pages), an unmapped
// guard page, the stack (stack_size bytes), an unmapped guard page, the
// exception stack (kExceptionStackPages pages, growing down from the
// thread-data page, so that it overflows into that guard page), and the
// thread-data page (OFSBASE = OGSBASE point at it).
struct EnclaveMeta {
  uint64_t magic;
  uint32_t abi_version;
  uint32_t tcs_count;
  uint64_t enclave_size;
  uint64_t meta_offset;
  uint64_t threads_offset;
  uint64_t thread_stride;
  uint64_t ssa_offset_in_block;
  uint32_t nssa;
  uint32_t ssa_frame_pages;
  uint64_t stack_offset_in_block;  // lowest address of the stack
  uint64_t stack_size;
  uint64_t td_offset_in_block;
  uint64_t heap_offset;
  uint64_t heap_size;
  uint64_t max_call_buffer;  // largest single ECALL/OCALL buffer, bytes
  uint32_t misc_select;
  uint32_t debug;
  // The image's whole configuration record (the .tme config section), so
  // that every config field -- ISV identity, masks included -- is measured
  // and readable by the enclave.
  uint32_t config_record_size;
  uint32_t reserved0;
  uint8_t config_record[256];
  // The mount manifest (mount_manifest_abi.h): measured read-only pages
  // right after this one; both zero when enclave.toml has no [[mount]].
  uint64_t manifest_offset;
  uint64_t manifest_size;  // bytes
  // Thread-local storage (PT_TLS), all zero without it: each thread's block
  // (tls_memsz rounded up to tls_align) sits right below its thread-data
  // page, initialised from [tls_vaddr, +tls_filesz) and zeros.
  uint64_t tls_vaddr;
  uint64_t tls_filesz;
  uint64_t tls_memsz;
  uint64_t tls_align;
  uint8_t reserved[4096 - 128 - 256 - 16 - 32];
};
static_assert(sizeof(EnclaveMeta) == 4096);
inline constexpr uint64_t kExceptionStackPages = 2;

// ---- Register protocol -----------------------------------------------------
// EENTER: RDI = EntryReason, RSI = address of a CallFrame in host memory
// (ECALL only). EEXIT: RDI = ExitReason, RSI = status (return) or CallFrame
// address (OCALL).
enum EntryReason : uint64_t {
  kEntryEcall = 1,      // RSI: CallFrame*
  kEntryOcallReturn = 2,
  kEntryException = 3,  // CSSA > 0: run the enclave's exception handling
  // CSSA > 0 after the thread that held the TCS died (its process ended):
  // reset the thread's state instead of resuming it. RSI: a CallFrame whose
  // `auth` is the control token (anything else is refused, so that no
  // co-tenant can reset another process's interrupted thread). The host
  // ERESUMEs once the enclave has exited with kExitExceptionHandled; the
  // reset code then exits with kExitReturn.
  kEntryRecover = 4,
};
enum ExitReason : uint64_t {
  kExitReturn = 1,           // ECALL finished; RSI: status
  kExitOcall = 2,            // RSI: CallFrame* on the host stack
  kExitExceptionHandled = 3, // host must ERESUME
  kExitAex = 4,              // synthesised by the host AEP stub, never by enclave code
};

// ---- Status codes shared by both sides (never negative) ---------------------
enum CallStatus : int32_t {
  kOk = 0,
  kErrInvalid = 1,        // malformed frame or arguments
  kErrUnknownCall = 2,    // no ECALL/OCALL with that id
  kErrBufferRange = 3,    // a host buffer overlaps the enclave or wraps
  kErrTooLarge = 4,       // a buffer exceeds max_call_buffer
  kErrNoMemory = 5,       // enclave heap exhausted
  kErrFault = 6,          // the enclave took an unhandled exception
  kErrOcallFailed = 7,    // the host returned something the enclave refused
  kErrAbi = 8,            // ABI version mismatch
  kErrState = 9,          // call not allowed in this state (e.g. ORET without OCALL)
  kErrApp = 10,           // application-level failure reported by the handler
  kErrMac = 11,           // authentication failed (sealed blob tag, REPORT MAC)
  kErrBusy = 12,          // control: a thread of that process is inside, or a runtime
                          // lock stayed taken (a dead thread's); retry after recovery
  kErrDenied = 13,        // shared enclave: this TCS is not leased, or the frame's
                          // auth is not its lease token / the control token
  kErrInterface = 14,     // typed call: the caller's stub came from a different interface
};

// The enum above is the ABI's spelling of teemate/status_codes.h: each
// value is tied to its table entry, and the table has no gaps.
namespace status_table {
#define TEEMATE_ABI_TABLE_ENTRY_(name, value, desc) inline constexpr int32_t name = value;
TEEMATE_STATUS_CODES(TEEMATE_ABI_TABLE_ENTRY_)
#undef TEEMATE_ABI_TABLE_ENTRY_
#define TEEMATE_ABI_TABLE_SUM_(name, value, desc) +(value)
inline constexpr int32_t kSum = 0 TEEMATE_STATUS_CODES(TEEMATE_ABI_TABLE_SUM_);
#undef TEEMATE_ABI_TABLE_SUM_
}  // namespace status_table
static_assert(kOk == status_table::OK && kErrInvalid == status_table::ERR_INVALID &&
              kErrUnknownCall == status_table::ERR_UNKNOWN_CALL &&
              kErrBufferRange == status_table::ERR_BUFFER_RANGE && kErrTooLarge == status_table::ERR_TOO_LARGE &&
              kErrNoMemory == status_table::ERR_NO_MEMORY && kErrFault == status_table::ERR_FAULT &&
              kErrOcallFailed == status_table::ERR_OCALL_FAILED && kErrAbi == status_table::ERR_ABI &&
              kErrState == status_table::ERR_STATE && kErrApp == status_table::ERR_APP &&
              kErrMac == status_table::ERR_MAC && kErrBusy == status_table::ERR_BUSY &&
              kErrDenied == status_table::ERR_DENIED && kErrInterface == status_table::ERR_INTERFACE,
              "CallStatus and teemate/status_codes.h disagree");
static_assert(status_table::kSum == TEEMATE_STATUS_CODE_COUNT * (TEEMATE_STATUS_CODE_COUNT - 1) / 2 &&
              kErrInterface == TEEMATE_STATUS_CODE_COUNT - 1,
              "teemate/status_codes.h must number its codes 0..COUNT-1");

// ---- Call frames --------------------------------------------------------------
inline constexpr uint32_t kMaxCallBuffers = 4;
inline constexpr uint32_t kMaxCallScalars = 4;

enum BufferDirection : uint32_t {
  kBufIn = 1,     // host -> enclave
  kBufOut = 2,    // enclave -> host; size is capacity, out_size what was written
  kBufInOut = 3,
};

struct CallBuffer {
  uint64_t ptr;       // host address
  uint64_t size;      // bytes (capacity for out buffers)
  uint64_t out_size;  // bytes written back (out buffers)
  uint32_t direction;
  uint32_t reserved;
};

// The application error channel: an ECALL handler that fails with its own
// code (tm_app_error) returns kErrApp and the enclave fills this in, so the
// host reports the application's code and message, not a runtime error.
inline constexpr uint32_t kAppMessageMax = 248;
struct AppError {
  int32_t code;
  uint32_t message_len;  // bytes of message, at most kAppMessageMax (no NUL)
  char message[kAppMessageMax];
};
static_assert(sizeof(AppError) == 256);

struct ExceptionReport {
  uint32_t vector;      // SGX exception vector (0 = #DE, 14 = #PF, ...)
  uint32_t valid;
  uint64_t rip_offset;  // faulting instruction, offset from the enclave base
  uint64_t addr;        // faulting address for #PF/#GP when known
};

// Lives in host memory for the whole call. For an ECALL the host fills the
// inputs; for an OCALL the enclave builds it on the host stack.
struct CallFrame {
  uint32_t abi_version;
  uint32_t call_id;
  int32_t status;  // out
  uint32_t nbufs;
  uint64_t scalars[kMaxCallScalars];  // in and out
  CallBuffer bufs[kMaxCallBuffers];
  ExceptionReport exception;  // out (ECALL), set when status == kErrFault
  // ECALL only: host memory the enclave may use to build OCALL frames
  // during this call (one region per nesting level, never shared).
  uint64_t ocall_scratch;
  uint64_t ocall_scratch_size;
  // Who may make this call, in a shared enclave (ignored in a dedicated
  // one): for a control ECALL, the 32-byte control token the daemon
  // installed with tm_control_claim; for any other ECALL, the 16-byte
  // lease token of the TCS (auth[0..1]; auth[2..3] zero), which the daemon
  // gives only to the process it leased that TCS to.
  uint64_t auth[4];
  AppError app_error;  // out (ECALL), set when status == kErrApp
};
inline constexpr uint64_t kOcallScratchSize = 256 * 1024;

// Runtime-reserved call ids; application ids start at kFirstUserCall.
inline constexpr uint32_t kFirstUserCall = 0x100;
// The host runtime's own ECALLs: typed calls of src/common/tm_runtime.edl
// (runtime interface part 2: ids from 0x10200 in declaration order; a unit
// test checks these against the interface file). Ids 1-10 were hand-built
// raw frames (run_main, ping, the daemon's control calls, threads,
// switchless set-up) and are no longer served.
enum RuntimeEcall : uint32_t {
  kRuntimeRunMain = 0x10200,
  kRuntimeThreadRun = 0x10201,
  kRuntimeSwitchlessSetup = 0x10202,
  kRuntimeSwitchlessWorker = 0x10203,
};
inline constexpr uint32_t kFirstRuntimeEcall = kRuntimeRunMain;
inline constexpr uint32_t kLastRuntimeEcall = kRuntimeSwitchlessWorker;
inline constexpr bool is_runtime_ecall(uint32_t id) { return id >= kFirstRuntimeEcall && id <= kLastRuntimeEcall; }
// Ids kFirstRuntimeId..kLastRuntimeId (interface block 0) belong to the
// runtime's interfaces; the host API refuses them as application calls.
inline constexpr uint32_t kFirstRuntimeId = 0x10000;
inline constexpr uint32_t kLastRuntimeId = 0x10fff;
// The daemon's control ECALLs: typed calls of src/common/tm_control.edl
// (runtime interface part 1: ids from 0x10100 in declaration order; a unit
// test checks these against the interface file). Every one carries the
// 32-byte control token in CallFrame::auth (kControlClaim installs it),
// takes exactly the two typed-call buffers of at most kControlMaxBytes each
// (copied to the enclave's stack, never its heap), makes no OCALL but the
// console and clock diagnostics, never flushes stdio, and fails with
// kErrBusy when a runtime lock stays taken for ~100 ms (held by a thread of
// a process that died and is not recovered yet), changing nothing that a
// retry would not redo. The ECALLs of the functions' comments in the .edl.
enum ControlEcall : uint32_t {
  kControlClaim = 0x10100,
  kControlResetThread = 0x10101,
  kControlProcessStart = 0x10102,
  kControlBindTcs = 0x10103,
  kControlProcessEnd = 0x10104,
};
inline constexpr uint32_t kFirstControlEcall = kControlClaim;
inline constexpr uint32_t kLastControlEcall = kControlProcessEnd;
inline constexpr uint64_t kControlMaxBytes = 256;
inline constexpr bool is_control_ecall(uint32_t id) { return id >= kFirstControlEcall && id <= kLastControlEcall; }
// The runtime's own OCALLs are typed calls of src/common/tm_posix.edl
// (interface block 0, ids from 0x10000 in declaration order). These three
// have fixed ids because teemated serves the first two itself (the enclave
// may log or read a clock during a control ECALL); a unit test checks them
// against the interface file. Raw ids 1-4 (the hand-built frames of
// earlier versions) are no longer served.
enum RuntimeOcall : uint32_t {
  kOcallConsoleWrite = 0x10024,  // tm_console_write(fd, buf, len)
  kOcallClock = 0x10025,         // tm_clock_ns(clock)
  kOcallSleepNs = 0x10026,       // tm_sleep_ns(ns)
};

// ---- Switchless calls --------------------------------------------------------
// A queue in the host memory of one process, polled by workers on the other
// side of the boundary (host threads for OCALLs, enclave threads for
// ECALLs). A caller claims a free slot, writes the address of its CallFrame
// and posts it; a worker takes it (Posted -> Running), serves the frame as
// a crossing would and marks it Done; the caller frees the slot. A caller
// that sees no worker take its request within its budget takes it back
// (Posted -> Free) and makes a real crossing. The host controls every word
// here: the enclave reads a slot's state only to decide whether to wait,
// and what it reads back is the same CallFrame a real crossing returns,
// checked the same way.
inline constexpr uint64_t kSwitchlessMagic = 0x3151534c48435753ull;  // "SWCHLSQ1"
inline constexpr uint32_t kSwitchlessSlots = 64;
enum SwitchlessSlotState : uint32_t {
  kSlotFree = 0,
  kSlotClaimed = 1,  // a caller is writing its frame address
  kSlotPosted = 2,
  kSlotRunning = 3,
  kSlotDone = 4,
};
struct alignas(64) SwitchlessSlot {
  uint32_t state;   // SwitchlessSlotState, changed with atomic operations
  uint32_t reserved;
  uint64_t frame;   // host address of the CallFrame
  uint8_t pad[48];
};
struct alignas(64) SwitchlessQueue {
  uint64_t magic;
  uint32_t awake_workers;  // workers polling now (a hint: 0 -> cross at once)
  uint32_t sleeping_workers;
  uint8_t pad[48];
  SwitchlessSlot slots[kSwitchlessSlots];
};
static_assert(sizeof(SwitchlessSlot) == 64 && sizeof(SwitchlessQueue) == 64 * (kSwitchlessSlots + 1));

}  // namespace teemate::abi
