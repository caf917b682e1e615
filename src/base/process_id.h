// This process's pid without a system call per ask, correct in every child
// however it was made (fork, _Fork, a raw clone without CLONE_VM): the
// value lives in a page the kernel zeroes in a child (MADV_WIPEONFORK),
// so a child finds it empty and asks the kernel once. Host-only. Never use
// it to tell threads apart (see gettid).
#pragma once

#include <sys/types.h>

namespace teemate::base {

pid_t current_pid();

}  // namespace teemate::base
