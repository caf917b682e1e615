// See ocall_frame.h.
#include "host/runtime/ocall_frame.h"

namespace teemate::host {
namespace {
thread_local const ConsoleSink* t_sink = nullptr;
}  // namespace

int32_t args_from_frame(const abi::CallFrame& f, CallArgs* args) {
  const uint8_t* lo = reinterpret_cast<const uint8_t*>(&f);
  const uint8_t* hi = lo + abi::kOcallScratchSize;
  if (f.nbufs > abi::kMaxCallBuffers) return abi::kErrInvalid;
  for (uint32_t i = 0; i < f.nbufs; ++i) {
    const abi::CallBuffer& b = f.bufs[i];
    auto* p = reinterpret_cast<uint8_t*>(b.ptr);
    if (p < lo || p > hi || b.size > static_cast<uint64_t>(hi - p)) return abi::kErrBufferRange;
    if (b.direction == abi::kBufIn) {
      args->in({p, b.size});
    } else if (b.direction == abi::kBufOut) {
      args->out({p, b.size});
    } else {
      args->inout({p, b.size});
    }
  }
  for (size_t i = 0; i < 4; ++i) args->scalar(i, f.scalars[i]);
  return abi::kOk;
}

void answer_frame(abi::CallFrame* f, CallArgs& args, int32_t status) {
  for (uint32_t i = 0; i < f->nbufs && i < args.buffer_count(); ++i) f->bufs[i].out_size = args.buffer(i).out_size;
  for (size_t i = 0; i < 4; ++i) f->scalars[i] = args.scalar_value(i);
  f->status = status;
}

ScopedConsoleSink::ScopedConsoleSink(const ConsoleSink* sink) : previous_(t_sink) { t_sink = sink; }
ScopedConsoleSink::~ScopedConsoleSink() { t_sink = previous_; }
const ConsoleSink* current_console_sink() { return t_sink; }

}  // namespace teemate::host
