#include "core/HubLink.h"

#include <cstring>

#include "core/HubWire.h"

namespace dingo {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxGather = 64;  // frames per writev
}  // namespace

std::shared_ptr<HubLink> HubLink::create(asio::io_context& io, int fd, size_t max_queue_bytes) {
  return std::make_shared<HubLink>(io, fd, max_queue_bytes);
}

HubLink::HubLink(asio::io_context& io, int fd, size_t max_queue_bytes)
    : socket_(io), max_queue_bytes_(max_queue_bytes) {
  boost::system::error_code ec;
  socket_.assign(asio::local::stream_protocol(), fd, ec);
  if (ec) ::close(fd);
  open_ = !ec;
}

void HubLink::start(FrameFn on_frame, CloseFn on_close) {
  on_frame_ = std::move(on_frame);
  on_close_ = std::move(on_close);
  if (!open_) {
    auto cb = std::move(on_close_);
    if (cb) cb("the hub socket could not be adopted");
    return;
  }
  readMore();
}

void HubLink::close(const std::string& why) {
  if (!open_) return;
  open_ = false;
  boost::system::error_code ec;
  socket_.close(ec);
  out_.clear();
  queued_bytes_ = 0;
  auto cb = std::move(on_close_);
  on_close_ = nullptr;
  if (cb) cb(why);
}

void HubLink::readMore() {
  if (in_.size() < in_len_ + kReadChunk) in_.resize(in_len_ + kReadChunk);
  socket_.async_read_some(
      asio::buffer(in_.data() + in_len_, kReadChunk),
      [self = shared_from_this()](boost::system::error_code ec, size_t n) {
        if (!self->open_) return;
        if (ec) {
          self->close(ec == asio::error::eof ? "the peer closed the hub link" : "hub link: " + ec.message());
          return;
        }
        self->in_len_ += n;
        size_t pos = 0;
        for (;;) {
          std::string_view rest(self->in_.data() + pos, self->in_len_ - pos);
          auto len = hubwire::frameLength(rest);
          if (!len) {
            self->close("hub link: a frame over the size limit");
            return;
          }
          if (*len == 0) break;
          self->on_frame_(rest.substr(0, *len));
          if (!self->open_) return;  // the frame handler closed the link
          pos += *len;
        }
        // Keep the unread tail at the front; give back a buffer grown for a big frame.
        if (pos > 0) {
          std::memmove(self->in_.data(), self->in_.data() + pos, self->in_len_ - pos);
          self->in_len_ -= pos;
        }
        if (self->in_len_ == 0 && self->in_.capacity() > 4 * kReadChunk) std::string().swap(self->in_);
        self->readMore();
      });
}

void HubLink::send(std::string frame) { enqueue(std::make_shared<const std::string>(std::move(frame))); }

void HubLink::send(std::shared_ptr<const std::string> frame) { enqueue(std::move(frame)); }

void HubLink::enqueue(std::shared_ptr<const std::string> frame) {
  if (!open_) return;
  queued_bytes_ += frame->size();
  out_.push_back(std::move(frame));
  if (queued_bytes_ > max_queue_bytes_) {
    close("hub link: the peer stopped reading (send queue over its limit)");
    return;
  }
  if (!writing_) writeMore();
}

void HubLink::writeMore() {
  if (!open_ || out_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  gather_.clear();
  gathered_frames_ = std::min(out_.size(), kMaxGather);
  for (size_t i = 0; i < gathered_frames_; ++i) gather_.push_back(asio::buffer(*out_[i]));
  asio::async_write(socket_, gather_, [self = shared_from_this()](boost::system::error_code ec, size_t) {
    if (!self->open_) return;
    if (ec) {
      self->close("hub link: " + ec.message());
      return;
    }
    for (size_t i = 0; i < self->gathered_frames_; ++i) {
      self->queued_bytes_ -= self->out_.front()->size();
      self->out_.pop_front();
    }
    self->writeMore();
  });
}

}  // namespace dingo
