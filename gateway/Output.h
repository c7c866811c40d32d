#pragma once
// The output half of a long-lived connection (WebSocket, SSE): a queue of complete
// frames, bounded in bytes, sent without waiting at the end of the event-loop turn
// (so fan-out sends everything queued for a connection in one writev), with a writer
// armed only while the socket is full. Shared frames are sent as they are on plain
// sockets and encrypted per connection on TLS ones. Include from .cpp files only.
#include <memory>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "core/Asio.h"
#include "core/Liveness.h"
#include "gateway/Context.h"
#include "gateway/PubSub.h"
#include "gateway/Transport.h"

namespace dingo {

class OutputOwner {
 public:
  virtual ~OutputOwner() = default;
  // Sending failed, or the queue went over its limit (`slow`): stop the connection.
  virtual void onOutputFailed(bool slow) = 0;
  // writeDeadline() changed.
  virtual void onWriteDeadline() = 0;
};

template <typename Stream>
class Output final : public Flushable {
  static constexpr bool kTls = std::is_same_v<Stream, TlsSocket>;
  static constexpr size_t kMaxGather = 64;  // frames per writev

 public:
  Output(GatewayContext& ctx, Stream& stream, OutputOwner& owner)
      : ctx_(ctx), stream_(stream), owner_(owner) {
    if constexpr (kTls) stream_.setOutputHook([this] { armWriter(); });
  }
  ~Output() override {
    if constexpr (kTls) stream_.setOutputHook(nullptr);
    ctx_.cancelFlush(this);
  }

  // Queues a frame and asks for a flush at the end of this turn.
  void enqueue(SharedFrame frame) {
    if (stopped_) return;
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    if (pending() > ctx_.config.gateway.send_queue_bytes) {
      // The client stopped reading: nothing still queued would reach it in time.
      ++ctx_.counters.slow_consumers;
      stop();
      owner_.onOutputFailed(true);
      return;
    }
    ctx_.requestFlush(this);
  }

  void flushNow() override {
    if (stopped_) return;
    boost::system::error_code ec;
    bool done = sendQueued(ec);
    if (ec) {
      stop();
      owner_.onOutputFailed(false);
      return;
    }
    if (!done) armWriter();
  }

  // Sends what the socket takes now; true when nothing is left.
  bool sendQueued(boost::system::error_code& ec) {
    if constexpr (kTls) {
      for (size_t i = head_; i < queue_.size(); ++i) {
        if (!stream_.encrypt(*queue_[i])) {
          ec = asio::error::broken_pipe;
          return false;
        }
      }
      clearQueue();
      size_t before = stream_.pendingOutput();
      bool empty = stream_.sendNow(ec);
      noteSent(before - stream_.pendingOutput(), empty);
      return empty;
    } else {
      while (head_ < queue_.size()) {
        asio::const_buffer bufs[kMaxGather];
        size_t count = 0, total = 0;
        for (size_t i = head_; i < queue_.size() && count < kMaxGather; ++i, ++count) {
          const std::string& f = *queue_[i];
          size_t skip = i == head_ ? head_offset_ : 0;
          bufs[count] = asio::buffer(f.data() + skip, f.size() - skip);
          total += f.size() - skip;
        }
        size_t n = stream_.trySend(std::span<const asio::const_buffer>(bufs, count), ec);
        if (ec) return false;
        consume(n);
        if (n < total) {
          noteSent(n, false);
          return false;
        }
      }
      noteSent(0, true);
      return true;
    }
  }

  // Sends everything queued, waiting as needed; the owner's deadline bounds it.
  asio::awaitable<void> drain(boost::system::error_code& ec) {
    for (;;) {
      bool done = sendQueued(ec);
      if (done || ec || stopped_) co_return;
      co_await stream_.waitWritable(ec);
      if (ec || stopped_) co_return;
    }
  }

  // No more output: the queue goes, nothing more is sent.
  void stop() {
    stopped_ = true;
    clearQueue();
  }
  bool stopped() const { return stopped_; }
  int64_t writeDeadline() const { return write_deadline_ms_; }
  // Starts the write deadline now (for the last flush before closing).
  void startWriteDeadline() {
    write_deadline_ms_ = steadyNowMs() + ctx_.config.gateway.write_timeout.count();
    owner_.onWriteDeadline();
  }

 private:
  size_t pending() const {
    if constexpr (kTls) return queued_bytes_ + stream_.pendingOutput();
    else return queued_bytes_;
  }

  void consume(size_t n) {
    ctx_.counters.bytes_out += n;
    queued_bytes_ -= n;
    while (n > 0) {
      size_t left = queue_[head_]->size() - head_offset_;
      if (n < left) {
        head_offset_ += n;
        return;
      }
      n -= left;
      head_offset_ = 0;
      ++head_;
    }
    if (head_ == queue_.size()) clearQueue();
  }

  void clearQueue() {
    queue_.clear();
    if (queue_.capacity() > 64) std::vector<SharedFrame>().swap(queue_);
    head_ = head_offset_ = 0;
    queued_bytes_ = 0;
  }

  // The write deadline runs only while output is stuck, and restarts on progress.
  void noteSent(size_t bytes, bool all) {
    if constexpr (kTls) ctx_.counters.bytes_out += bytes;
    if (all) {
      if (write_deadline_ms_) {
        write_deadline_ms_ = 0;
        owner_.onWriteDeadline();
      }
    } else if (bytes > 0 || !write_deadline_ms_) {
      startWriteDeadline();
    }
  }

  // Sends the rest once the socket can take more.
  void armWriter() {
    if (writer_armed_ || stopped_) return;
    writer_armed_ = true;
    if (!write_deadline_ms_) startWriteDeadline();
    stream_.socket().async_wait(asio::ip::tcp::socket::wait_write,
                                [this, life = life_.watch()](boost::system::error_code ec) {
                                  if (life.expired()) return;
                                  writer_armed_ = false;
                                  if (!ec) flushNow();
                                });
  }

  GatewayContext& ctx_;
  Stream& stream_;
  OutputOwner& owner_;
  Liveness life_;  // the writer's callback watches it
  std::vector<SharedFrame> queue_;  // queue_[head_..] waits to be sent
  size_t head_ = 0;
  size_t head_offset_ = 0;  // bytes of queue_[head_] already sent (plain)
  size_t queued_bytes_ = 0;
  int64_t write_deadline_ms_ = 0;
  bool writer_armed_ = false;
  bool stopped_ = false;
};

// The after_ms of a reconnect event: random in 250 ms .. 5 s, so that the clients of a
// draining worker do not all come back at once.
inline uint32_t reconnectJitterMs() {
  static std::minstd_rand rng{std::random_device{}()};
  return 250 + static_cast<uint32_t>(rng() % 4750);
}

// Reads land here and are handled before the next suspension, so one buffer serves
// every connection of the process (one thread) and an idle connection holds none.
inline constexpr size_t kSharedReadBytes = 64 * 1024;
inline char* sharedReadBuffer() {
  static char* buffer = new char[kSharedReadBytes];
  return buffer;
}

// The read loop of a long-lived connection: wait for readability, read everything that
// arrived, hand it to `session.onInput`, until `session.running()` is false or the
// connection ends. Waiting before reading is what keeps an idle connection down to one
// coroutine frame and no buffer.
template <typename Session, typename Stream>
asio::awaitable<void> readUntilDone(Session& session, Stream& stream) {
  boost::system::error_code ec;
  while (session.running()) {
    co_await stream.socket().async_wait(asio::ip::tcp::socket::wait_read,
                                        asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !session.running()) break;
    for (;;) {
      size_t n = stream.readNow(asio::buffer(sharedReadBuffer(), kSharedReadBytes), ec);
      if (ec) break;
      session.onInput(std::string_view(sharedReadBuffer(), n));
      if (!session.running()) break;
    }
    if (ec == asio::error::would_block) ec = {};
    if (ec) break;
  }
}

}  // namespace dingo
