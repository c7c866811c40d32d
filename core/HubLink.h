#pragma once
// One end of a hub link: reads hubwire frames off a stream socket and writes frames
// through a bounded queue. Used by the supervisor's hub server (one per worker) and by
// a worker's hub client. Included only by those .cpp files (it pulls in Asio).
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/Asio.h"

namespace dingo {

class HubLink : public std::enable_shared_from_this<HubLink> {
 public:
  using FrameFn = std::function<void(std::string_view frame)>;  // a whole frame, prefix included
  using CloseFn = std::function<void(const std::string& why)>;

  // Takes ownership of `fd`. More than `max_queue_bytes` waiting to be written closes
  // the link: the peer stopped reading.
  static std::shared_ptr<HubLink> create(asio::io_context& io, int fd, size_t max_queue_bytes);

  // Starts reading. Frames are handed over in order; `on_close` runs once, when the
  // peer closes, on an I/O or framing error, on overflow, or after close().
  void start(FrameFn on_frame, CloseFn on_close);
  void send(std::string frame);
  void send(std::shared_ptr<const std::string> frame);  // one buffer shared by several links
  void close(const std::string& why);
  bool isOpen() const { return open_; }
  size_t queuedBytes() const { return queued_bytes_; }

  HubLink(asio::io_context& io, int fd, size_t max_queue_bytes);

 private:
  void readMore();
  void writeMore();
  void enqueue(std::shared_ptr<const std::string> frame);

  asio::local::stream_protocol::socket socket_;
  size_t max_queue_bytes_;
  FrameFn on_frame_;
  CloseFn on_close_;
  bool open_ = false;
  std::string in_;
  size_t in_len_ = 0;  // bytes of in_ holding data
  std::deque<std::shared_ptr<const std::string>> out_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  std::vector<asio::const_buffer> gather_;
  size_t gathered_frames_ = 0;
};

}  // namespace dingo
