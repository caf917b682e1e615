/* The one table of status codes that cross the enclave boundary: the ABI's
 * CallStatus (common/enclave_abi.h), the enclave API's TM_ERR_* constants
 * (teemate/trusted/runtime.h) and the host's names for them
 * (teemate::call_status_name) are all generated from it and tied together
 * with static_asserts, so an enclave error is always printed by name.
 * Plain C preprocessor data, included by both sides. Never renumber an
 * entry: the values are part of the ABI. */
#ifndef TEEMATE_STATUS_CODES_H_
#define TEEMATE_STATUS_CODES_H_

/* X(NAME, value, "what it means") */
#define TEEMATE_STATUS_CODES(X)                                                                   \
  X(OK, 0, "success")                                                                             \
  X(ERR_INVALID, 1, "malformed call frame or arguments")                                          \
  X(ERR_UNKNOWN_CALL, 2, "no ECALL or OCALL with that id")                                        \
  X(ERR_BUFFER_RANGE, 3, "a host buffer overlaps the enclave or wraps around")                    \
  X(ERR_TOO_LARGE, 4, "a buffer exceeds the enclave's max_call_buffer or a capacity is too small") \
  X(ERR_NO_MEMORY, 5, "the enclave heap is exhausted")                                            \
  X(ERR_FAULT, 6, "the enclave took an exception it did not handle")                              \
  X(ERR_OCALL_FAILED, 7, "the host's answer to an OCALL was refused by the enclave")              \
  X(ERR_ABI, 8, "host and enclave ABI versions differ")                                           \
  X(ERR_STATE, 9, "call not allowed in this state")                                               \
  X(ERR_APP, 10, "application error reported by the handler")                                     \
  X(ERR_MAC, 11, "authentication failed (sealed blob tag, REPORT MAC)")                           \
  X(ERR_BUSY, 12, "busy: a thread of that process is inside, or a runtime lock stayed taken")     \
  X(ERR_DENIED, 13, "denied: this TCS is not leased to the caller, or its token is wrong")       \
  X(ERR_INTERFACE, 14, "typed call: caller and callee were generated from different interfaces")

#define TEEMATE_STATUS_CODE_COUNT 15

#endif /* TEEMATE_STATUS_CODES_H_ */
