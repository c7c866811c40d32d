#pragma once
// A real redis-server for tests (Debian's, installed by scripts/install-deps.sh): a child
// process on a free loopback port, no persistence, killed at the end.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace dingo::test {

using namespace std::chrono_literals;

inline uint16_t freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A redis-server child on `port`.
class RedisServer {
 public:
  explicit RedisServer(uint16_t port, std::string password = {}) : port_(port), password_(std::move(password)) {
    start();
  }
  ~RedisServer() { kill(); }

  void start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string p = std::to_string(port_);
      std::vector<const char*> argv = {"redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--loglevel", "warning"};
      if (!password_.empty()) {
        argv.push_back("--requirepass");
        argv.push_back(password_.c_str());
      }
      argv.push_back(nullptr);
      ::execvp("redis-server", const_cast<char**>(argv.data()));
      ::_exit(127);
    }
    // Ready when it accepts.
    for (int i = 0; i < 200; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port_);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
      if (up) return;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "redis-server did not start on port " << port_;
  }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

 private:
  uint16_t port_;
  std::string password_;
  pid_t pid_ = -1;
};

}  // namespace dingo::test
