// Whole-file reads with a size limit and atomic writes (temporary file in the
// same directory, fsync, rename), shared by the image library and the CLI.
// Never leaves a partial output file behind: on any failure the temporary
// file is removed and the destination is untouched.
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <span>
#include <string>
#include <vector>

#include "teemate/status.h"

namespace teemate::image {

// Reads a regular file of at most `max_size` bytes; errors name the path.
Result<std::vector<uint8_t>> read_file(const std::string& path, uint64_t max_size);

// Reads a file whose size stat does not tell (a /proc file) until EOF, at
// most `max_size` bytes. An error (the process behind it ended, ESRCH) is a
// value, never an exception.
Result<std::string> read_text_file(const std::string& path, size_t max_size = 1 << 20);

// The names in a directory (without "." and ".."), read with readdir: an
// entry that vanishes meanwhile (a /proc process) is no error, and nothing
// throws. Empty when the directory cannot be opened.
std::vector<std::string> list_directory(const std::string& path);

// Writes the concatenation of `parts` to `path` atomically with permission
// bits `mode`. With overwrite == false an existing `path` is an error and is
// left alone (the final step is renameat2(RENAME_NOREPLACE), or link(2) where
// the file system lacks it; neither replaces a file).
Status write_file_atomic(const std::string& path, std::span<const std::span<const uint8_t>> parts,
                         mode_t mode, bool overwrite);

// Convenience form for a single buffer.
Status write_file_atomic(const std::string& path, std::span<const uint8_t> data, mode_t mode,
                         bool overwrite);

}  // namespace teemate::image
