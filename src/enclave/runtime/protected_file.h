/* Protected files (protected_file.cpp): the contents of a file of a
 * `protected` mount, decrypted and verified whole at open, edited in enclave
 * memory, and encrypted back (only the changed 4 KiB chunks) at flush. The
 * format is in docs/enclave-files.md. Enclave-only; never hands the host a
 * byte of plaintext or key. */
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace teemate::trts {

struct ProtectedFile;

/* Reads and verifies the file behind `host_fd`, bound to `enclave_path`.
 * An empty host file is a new, empty protected file only when `may_create`
 * (the open had O_CREAT or O_TRUNC and can write); `truncate` empties it.
 * 0 or an errno: EIO for a file that fails any check, ENOMEM, EFBIG. */
int pf_open(int host_fd, const char* enclave_path, bool may_create, bool truncate, ProtectedFile** out);
uint64_t pf_size(const ProtectedFile* f);
/* Bytes copied (short at the end of the file). */
size_t pf_read(const ProtectedFile* f, void* buf, size_t len, uint64_t at);
/* 0 or an errno (ENOMEM, EFBIG). Writing past the end fills the gap with zeros. */
int pf_write(ProtectedFile* f, const void* buf, size_t len, uint64_t at);
int pf_truncate(ProtectedFile* f, uint64_t size);
/* Binds the file to another enclave path (rename); written at the next flush. */
int pf_rebind(ProtectedFile* f, const char* enclave_path);
/* Writes what changed back through `host_fd` (chunks, then the header).
 * 0 or an errno. */
int pf_flush(ProtectedFile* f, int host_fd);
/* Forgets the file: zeroes the key and the plaintext, frees everything. */
void pf_free(ProtectedFile* f);

}  // namespace teemate::trts
