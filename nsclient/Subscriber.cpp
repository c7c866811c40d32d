#include "dingo/nsclient/Subscriber.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

namespace dingo::ns {

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

std::string base64(const unsigned char* data, size_t len) {
  std::string out(4 * ((len + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Sec-WebSocket-Accept for `key` (RFC 6455 section 4.2.2).
std::string acceptFor(const std::string& key) {
  std::string s = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  return base64(digest, sizeof digest);
}

// A client frame: FIN, masked (RFC 6455 requires it of clients).
std::string clientFrame(uint8_t opcode, std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>(0x80 | opcode));
  size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  unsigned char mask[4];
  RAND_bytes(mask, sizeof mask);
  f.append(reinterpret_cast<const char*>(mask), 4);
  for (size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return f;
}

std::string headerValue(const std::string& head, std::string name) {
  std::string lower = head;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t at = lower.find("\r\n" + name + ":");
  if (at == std::string::npos) return {};
  size_t begin = at + 3 + name.size();
  size_t end = head.find("\r\n", begin);
  std::string v = head.substr(begin, end - begin);
  v.erase(0, v.find_first_not_of(" \t"));
  v.erase(v.find_last_not_of(" \t") + 1);
  return v;
}

// Sleeps `d`, waking every 100 ms to see whether to stop.
void pause(std::chrono::milliseconds d, const volatile bool& stopping) {
  auto until = Clock::now() + d;
  while (!stopping && Clock::now() < until)
    std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(100)));
}

}  // namespace

Subscriber::Subscriber(Resolver& resolver, SubscribeOptions options)
    : resolver_(resolver), options_(std::move(options)), backoff_(options_.policy), positions_(options_.since) {}

int Subscriber::run(const Handler& on_event) {
  auto emit = [&](const SubscriberEvent& e) {
    if (!on_event(e)) stopping_ = true;
  };
  while (!stopping_) {
    refreshWhenDue(on_event);

    unsigned char raw[16];
    RAND_bytes(raw, sizeof raw);
    std::string key = base64(raw, sizeof raw);
    std::vector<Attempt> attempts;
    auto conn = resolver_.race(resolver_.candidates(), "/v1/ws",
                               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: " + key + "\r\n",
                               101, &attempts);
    if (conn && headerValue(conn->head(), "Sec-WebSocket-Accept") != acceptFor(key)) conn.reset();
    if (!conn) {
      std::string why = attempts.empty() ? "no candidates" : "no gateway answered";
      for (const auto& a : attempts)
        if (!a.error.empty() && a.error != "not tried") {
          why += "; " + a.candidate.endpoint.toString() + ": " + a.error;
          break;
        }
      auto delay = backoff_.nextDelay();
      emit({SubscriberEvent::Kind::Waiting, {}, 0, {}, {}, true, {}, why, delay.count()});
      pause(delay, stopping_);
      continue;
    }
    emit({SubscriberEvent::Kind::Connected, conn->candidate().endpoint.toString(), conn->rttMs()});
    auto up_since = Clock::now();
    std::string reason;
    int64_t hint_ms = 0;
    End end = session(*conn, on_event, reason, hint_ms);
    conn.reset();
    if (end == End::Stopped || stopping_) break;
    if (end == End::Failed) {
      emit({SubscriberEvent::Kind::Disconnected, {}, 0, {}, {}, true, {}, reason});
      return 1;
    }
    auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - up_since);
    auto delay = end == End::Hinted ? backoff_.afterHint(std::chrono::milliseconds(hint_ms), uptime)
                                    : backoff_.afterDrop(uptime);
    emit({SubscriberEvent::Kind::Disconnected, {}, 0, {}, {}, true, {}, reason});
    emit({SubscriberEvent::Kind::Waiting, {}, 0, {}, {}, true, {}, reason, delay.count()});
    pause(delay, stopping_);
  }
  if (refreshing_.valid()) refreshing_.wait();
  return 0;
}

void Subscriber::refreshWhenDue(const Handler& on_event) {
  int64_t now = unixNow();
  if (refreshing_.valid()) {
    if (refreshing_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    RefreshResult r = refreshing_.get();
    SubscriberEvent e{SubscriberEvent::Kind::Refreshed};
    e.recovered = r.ok;
    e.endpoint = r.from;
    e.reason = r.ok ? std::to_string(r.nodes) + " node(s), version " + std::to_string(r.version) +
                          (r.changed ? "" : " (unchanged)")
                    : r.error;
    if (!on_event(e)) stopping_ = true;
    // A new list has its own due time; a failure is tried again after a tenth of the
    // list's TTL (5 s to a minute), not at once.
    auto meta = resolver_.store().nodesMeta();
    int64_t ttl = meta ? meta->ttl_s : 600;
    next_refresh_check_ = r.ok ? 0 : now + std::clamp<int64_t>(ttl / 10, 5, 60);
  }
  // The node list is refreshed at about 75% of its TTL (jittered per client), and at once
  // when there is none.
  if (now < next_refresh_check_) return;
  next_refresh_check_ = now + 1;
  int64_t due = resolver_.nextRefreshAt();
  if (due > now) return;
  next_refresh_check_ = now + 3600;  // until this refresh ends
  Options options = resolver_.options();
  refreshing_ = std::async(std::launch::async, [options] {
    try {
      Resolver own(options);
      return own.refresh();
    } catch (const std::exception& e) {
      RefreshResult r;
      r.error = e.what();
      return r;
    }
  });
}

Subscriber::End Subscriber::session(Connection& c, const Handler& on_event, std::string& reason,
                                    int64_t& hint_ms) {
  auto emit = [&](const SubscriberEvent& e) {
    if (!on_event(e)) stopping_ = true;
  };
  auto send = [&](const json& cmd) { return c.writeAll(clientFrame(1, cmd.dump()), std::chrono::seconds(5)); };
  // Subscribe everything, each from the last position delivered.
  uint64_t next_id = 1;
  std::map<uint64_t, std::string> subscribing;
  for (const auto& ch : options_.channels) {
    json cmd = {{"id", next_id}, {"op", "subscribe"}, {"channel", ch}};
    if (auto it = positions_.find(ch); it != positions_.end() && !it->second.empty()) cmd["since"] = it->second;
    subscribing[next_id++] = ch;
    if (!send(cmd)) {
      reason = "sending subscribe failed";
      return End::Dropped;
    }
  }
  auto next_ping = Clock::now() + options_.keepalive;
  uint64_t ping_id = 0;  // the keepalive ping awaiting its answer (0: none)
  auto ping_sent = Clock::now();
  std::string in, message;
  char buf[16384];
  for (;;) {
    if (stopping_) {
      c.writeAll(clientFrame(8, std::string("\x03\xe8", 2)), std::chrono::milliseconds(500));
      return End::Stopped;
    }
    auto now = Clock::now();
    if (ping_id && now - ping_sent >= options_.keepalive) {
      reason = "no answer to a keepalive within " + std::to_string(options_.keepalive.count()) + " ms";
      return End::Dropped;
    }
    if (!ping_id && now >= next_ping) {
      ping_id = next_id++;
      ping_sent = now;
      if (!send({{"id", ping_id}, {"op", "ping"}})) {
        reason = "sending a keepalive failed";
        return End::Dropped;
      }
    }
    refreshWhenDue(on_event);
    auto wake = ping_id ? ping_sent + options_.keepalive : next_ping;
    auto wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()),
                           std::chrono::milliseconds(1), std::chrono::milliseconds(200));
    long n = c.readSome(buf, sizeof buf, wait);
    if (n == Connection::kReadTimedOut) continue;
    if (n == 0) {
      reason = "the gateway closed the connection";
      return End::Dropped;
    }
    if (n < 0) {
      reason = "the connection failed";
      return End::Dropped;
    }
    in.append(buf, static_cast<size_t>(n));
    // Every complete frame in the buffer.
    for (;;) {
      if (in.size() < 2) break;
      auto b0 = static_cast<unsigned char>(in[0]), b1 = static_cast<unsigned char>(in[1]);
      bool fin = b0 & 0x80;
      uint8_t op = b0 & 0x0f;
      if (b1 & 0x80) {
        reason = "the gateway sent a masked frame";
        return End::Dropped;
      }
      uint64_t len = b1 & 0x7f;
      size_t hdr = 2;
      if (len == 126) {
        if (in.size() < 4) break;
        len = (uint64_t{static_cast<unsigned char>(in[2])} << 8) | static_cast<unsigned char>(in[3]);
        hdr = 4;
      } else if (len == 127) {
        if (in.size() < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(in[2 + i]);
        hdr = 10;
      }
      if (len > options_.max_message_bytes || message.size() + len > options_.max_message_bytes) {
        reason = "a message over " + std::to_string(options_.max_message_bytes) + " bytes";
        return End::Dropped;
      }
      if (in.size() < hdr + len) break;
      std::string payload = in.substr(hdr, len);
      in.erase(0, hdr + len);
      if (op == 9) {  // ping
        c.writeAll(clientFrame(10, payload), std::chrono::seconds(5));
        continue;
      }
      if (op == 10) continue;
      if (op == 8) {
        uint16_t code = payload.size() >= 2 ? static_cast<uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                                                    static_cast<unsigned char>(payload[1]))
                                            : 1005;
        c.writeAll(clientFrame(8, payload.substr(0, 2)), std::chrono::milliseconds(500));
        reason = "closed by the gateway (" + std::to_string(code) + ")";
        return End::Dropped;
      }
      if (op != 0 && op != 1) {
        reason = "unexpected frame opcode " + std::to_string(op);
        return End::Dropped;
      }
      message += payload;
      if (!fin) continue;
      json m = json::parse(message, nullptr, false);
      message.clear();
      if (!m.is_object()) continue;
      if (m.contains("event")) {
        std::string ev = m.value("event", "");
        if (ev == "message") {
          std::string ch = m.value("channel", ""), pos = m.value("position", "");
          positions_[ch] = pos;
          emit({SubscriberEvent::Kind::Message, {}, 0, ch, pos, true, m.contains("data") ? m["data"].dump() : "null"});
        } else if (ev == "reconnect") {
          hint_ms = m.value("after_ms", int64_t{0});
          reason = "the gateway asked to reconnect in " + std::to_string(hint_ms) + " ms";
          c.writeAll(clientFrame(8, std::string("\x03\xe9", 2)), std::chrono::milliseconds(500));
          return End::Hinted;
        }
        continue;
      }
      uint64_t id = m.value("id", uint64_t{0});
      if (id == ping_id && id != 0) {
        ping_id = 0;
        next_ping = Clock::now() + options_.keepalive;
        continue;
      }
      auto it = subscribing.find(id);
      if (it == subscribing.end()) continue;
      std::string ch = it->second;
      subscribing.erase(it);
      if (!m.value("ok", false)) {
        std::string code = m.contains("error") ? m["error"].value("code", "") : "";
        std::string text = m.contains("error") ? m["error"].value("message", "") : "";
        reason = "subscribe " + ch + ": " + code + (text.empty() ? "" : " (" + text + ")");
        // The hub may be back in a moment; anything else is the caller's to fix.
        return code == "unavailable" || code == "limit" ? End::Dropped : End::Failed;
      }
      bool recovered = m.value("recovered", true);
      std::string pos = m.value("position", "");
      emit({SubscriberEvent::Kind::Subscribed, {}, 0, ch, pos, recovered});
      if (m.contains("messages") && m["messages"].is_array()) {
        for (const auto& msg : m["messages"]) {
          std::string p = msg.value("position", "");
          emit({SubscriberEvent::Kind::Message, {}, 0, ch, p, true,
                msg.contains("data") ? msg["data"].dump() : "null"});
          positions_[ch] = p;
        }
      }
      positions_[ch] = pos;
    }
  }
}

}  // namespace dingo::ns
