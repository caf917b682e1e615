/* The enclave's mount table (mounts.cpp): from an enclave path to its
 * mount type, host path and, for trusted files, the measured digest.
 * Enclave-only; never calls the host. */
#pragma once

#include <stdint.h>

#include "common/mount_manifest_abi.h"

namespace teemate::trts {

struct ResolvedPath {
  uint32_t type;                       /* abi::MountType */
  bool at_mount_root;                  /* the path is the mount point itself */
  bool trailing_slash;                 /* written with a final '/': must be a directory */
  const abi::ManifestFile* trusted;    /* trusted mounts: the file's entry, or null */
  char enclave_path[abi::kManifestMaxPath + 1];   /* normalised */
  char host_path[2 * abi::kManifestMaxPath + 2];
};

/* 0, or an errno: ENOENT when no mount covers the path (or the image has
 * none), ENAMETOOLONG, EFAULT. A relative path is taken from "/". */
int resolve_path(const char* path, ResolvedPath* out);

}  // namespace teemate::trts
