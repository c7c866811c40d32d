#pragma once
// The connections of each user (a token's `sub`) in this worker, so that
// `dingoctl disconnect --user` can close them all. WebSocket connections, SSE streams
// and held polls register while they carry a token with a `sub`.
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dingo {

class UserSession {
 public:
  virtual ~UserSession() = default;
  // Close (or answer, for a held poll) because an operator disconnected the user.
  virtual void disconnectUser(std::string_view reason) = 0;
};

class UserRegistry {
 public:
  void add(std::string_view user, UserSession* s) { users_[std::string(user)].push_back(s); }

  void remove(std::string_view user, UserSession* s) {
    auto it = users_.find(std::string(user));
    if (it == users_.end()) return;
    std::erase(it->second, s);
    if (it->second.empty()) users_.erase(it);
  }

  // Tells every session of `user`; returns how many there were.
  size_t disconnect(std::string_view user, std::string_view reason) {
    auto it = users_.find(std::string(user));
    if (it == users_.end()) return 0;
    // A session may leave the registry while it is told: work on a copy.
    std::vector<UserSession*> sessions = it->second;
    for (UserSession* s : sessions) s->disconnectUser(reason);
    return sessions.size();
  }

 private:
  std::unordered_map<std::string, std::vector<UserSession*>> users_;
};

}  // namespace dingo
