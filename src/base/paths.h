// Where TeeMate keeps state and sockets by default, the XDG way: one copy
// of the rules for the daemon, the sim backend's key and the clients.
// Host-only.
#pragma once

#include <string>

namespace teemate::base {

// /var/lib/teemate for root, else $XDG_STATE_HOME/teemate, else
// ~/.local/state/teemate, else /tmp/teemate-UID/state.
std::string state_dir();
// /run/teemate for root, else $XDG_RUNTIME_DIR/teemate, else /tmp/teemate-UID.
std::string runtime_dir();

}  // namespace teemate::base
