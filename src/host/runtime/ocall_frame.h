// Host-side helpers for serving an OCALL frame the enclave built in a
// scratch region: its buffers and scalars as CallArgs (every buffer checked
// to lie inside the region), the answer written back, and where the
// runtime's console OCALL sends text on the thread serving it. Shared by
// the host runtime (crossings and switchless workers) and teemated. Never
// trusts a length or pointer of the frame it has not checked.
#pragma once

#include <stdint.h>

#include <functional>
#include <string_view>

#include "common/enclave_abi.h"
#include "teemate/enclave.h"

namespace teemate::host {

// The frame's buffers and scalars; kErrInvalid / kErrBufferRange (as an
// ABI status) when a count or a buffer is out of bounds.
int32_t args_from_frame(const abi::CallFrame& f, CallArgs* args);
// out_size of every buffer, the scalars and the status, back into `f`.
void answer_frame(abi::CallFrame* f, CallArgs& args, int32_t status);

using ConsoleSink = std::function<void(int fd, std::string_view text)>;
// While alive, tm_console_write on this thread goes to `sink` (null or an
// empty function: this process's fds 1 and 2).
class ScopedConsoleSink {
 public:
  explicit ScopedConsoleSink(const ConsoleSink* sink);
  ~ScopedConsoleSink();
  ScopedConsoleSink(const ScopedConsoleSink&) = delete;
  ScopedConsoleSink& operator=(const ScopedConsoleSink&) = delete;

 private:
  const ConsoleSink* previous_;
};
const ConsoleSink* current_console_sink();

}  // namespace teemate::host
