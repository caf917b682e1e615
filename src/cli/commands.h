// The `teemate` command-line verbs. Each verb is a thin file (cmd_<verb>.cpp)
// that declares its options, writes its --help and calls the library; none
// holds logic another tool would need. Verbs never throw and never leave a
// half-written output file: errors go through report() as
// "teemate <verb>: <message>".
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "teemate/status.h"
#include "sgx/measurement.h"
#include "sgx/sigstruct.h"

namespace teemate::cli {

void register_keygen(CLI::App& app);
void register_pack(CLI::App& app);
void register_sign(CLI::App& app);
void register_measure(CLI::App& app);
void register_verify(CLI::App& app);
void register_inspect(CLI::App& app);
void register_enclave(CLI::App& app);
void register_edger(CLI::App& app);
// main's exit status after `enclave run`, or -1 when no program ran.
int enclave_run_exit_status();

// ---- shared helpers (cli_util.cpp) -----------------------------------------

// Records the outcome of a verb: on error prints "teemate <verb>: <message>"
// to stderr and makes the process exit with status 1.
void report(const char* verb, const Status& status);
// The exit status main() returns.
int exit_status();

// Reads and parses a PEM signing key (RSA-3072, e = 3); errors name the path.
Result<sgx::SigningKey> read_signing_key(const std::string& path);

// Flushes stdout; an error (EPIPE, disk full) becomes a Status.
Status flush_stdout();

// The "EXIT STATUS" paragraph shared by every verb's --help.
extern const char* const kExitStatusHelp;

// The man-page part of a verb's --help, printed after the options:
// DESCRIPTION (indented `description`), EXAMPLE (`examples`, one per line)
// and EXIT STATUS.
std::string man_footer(const std::string& description, const std::string& examples);

}  // namespace teemate::cli
