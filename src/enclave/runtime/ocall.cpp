/* OCALLs: builds a CallFrame and copies of the IN buffers in the host
 * scratch region this ECALL level was given, leaves the enclave (or hands
 * the frame to a host worker, switchless.cpp), and on
 * return copies back OUT buffers after checking the host's lengths. The
 * enclave places every buffer itself and never follows a pointer the host
 * wrote; it reads the returned frame once. Never used outside an ECALL. */
#include <string.h>

#include "runtime.h"
#include "tm_posix_t.h"

namespace teemate::trts {
namespace {
constexpr uint64_t align64(uint64_t v) { return (v + 63) & ~uint64_t{63}; }
}  // namespace
}  // namespace teemate::trts

using namespace teemate;
using namespace teemate::trts;

namespace {
int make_ocall(tm_call* call, bool switchless) {
  ThreadData* td = current_td();
  EcallState* st = td->current_ecall;
  if (!st || !call || call->nbufs > abi::kMaxCallBuffers) return TM_ERR_INVALID;
  if (!st->scratch || st->scratch_size < sizeof(abi::CallFrame)) return TM_ERR_OCALL_FAILED;

  // Place the frame and the buffers in the scratch region.
  uint64_t offsets[abi::kMaxCallBuffers] = {};
  uint64_t used = align64(sizeof(abi::CallFrame));
  for (uint32_t i = 0; i < call->nbufs; ++i) {
    const tm_buffer& b = call->bufs[i];
    if (b.direction < TM_BUF_IN || b.direction > TM_BUF_INOUT) return TM_ERR_INVALID;
    if (b.size > st->scratch_size) return TM_ERR_TOO_LARGE;
    if (b.size && !within_enclave(reinterpret_cast<uint64_t>(b.data), b.size)) return TM_ERR_BUFFER_RANGE;
    offsets[i] = used;
    used = align64(used + b.size);
    if (used > st->scratch_size) return TM_ERR_TOO_LARGE;
  }

  abi::CallFrame frame{};
  frame.abi_version = abi::kAbiVersion;
  frame.call_id = call->id;
  frame.nbufs = call->nbufs;
  memcpy(frame.scalars, call->scalars, sizeof(frame.scalars));
  for (uint32_t i = 0; i < call->nbufs; ++i) {
    const tm_buffer& b = call->bufs[i];
    uint64_t host = st->scratch + offsets[i];
    frame.bufs[i] = abi::CallBuffer{host, b.size, 0, b.direction, 0};
    if (b.direction & TM_BUF_IN) {
      memcpy(reinterpret_cast<void*>(host), b.data, b.size);
    } else {
      memset(reinterpret_cast<void*>(host), 0, b.size);
    }
  }
  auto* host_frame = reinterpret_cast<abi::CallFrame*>(st->scratch);
  memcpy(host_frame, &frame, sizeof(frame));

  if (!switchless || !switchless_ocall(st->scratch)) teemate_do_ocall(st->scratch);

  abi::CallFrame back;
  memcpy(&back, host_frame, sizeof(back));  // one read of host memory
  if (back.status < 0) return TM_ERR_OCALL_FAILED;
  for (uint32_t i = 0; i < call->nbufs; ++i) {
    tm_buffer& b = call->bufs[i];
    if (!(b.direction & TM_BUF_OUT)) continue;
    uint64_t n = back.bufs[i].out_size;
    if (n > b.size) return TM_ERR_OCALL_FAILED;  // host claims more than fits
    memcpy(b.data, reinterpret_cast<const void*>(st->scratch + offsets[i]), n);
    b.out_size = n;
  }
  memcpy(call->scalars, back.scalars, sizeof(call->scalars));
  return back.status;
}
}  // namespace

extern "C" int tm_ocall(tm_call* call) { return make_ocall(call, false); }

extern "C" int tm_ocall_switchless(tm_call* call) { return make_ocall(call, true); }

namespace teemate::trts {

int host_write(int fd, const void* data, size_t size) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    size_t chunk = size < 64 * 1024 ? size : 64 * 1024;
    int64_t written = 0;
    int rc = tm_console_write(&written, fd, p, chunk);
    if (rc != TM_OK) return rc;
    // Iago: the count must be what we asked for or less, never nothing.
    if (written <= 0 || static_cast<uint64_t>(written) > chunk) return TM_ERR_OCALL_FAILED;
    p += written;
    size -= written;
  }
  return TM_OK;
}

}  // namespace teemate::trts
