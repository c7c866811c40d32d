// dingo-nsclient: the resolver's command line. Options parsing and printing only; the
// work is in libdingo-nsclient.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <unistd.h>

#include "dingo/nsclient/Resolver.h"
#include "dingo/nsclient/Subscriber.h"

using namespace dingo::ns;
using json = nlohmann::json;

namespace {

dingo::ns::Subscriber* g_subscriber = nullptr;

// "250ms", "5s", "2m", "1h" -> milliseconds; nullopt when malformed.
std::optional<std::chrono::milliseconds> parseDuration(const std::string& text) {
  static const std::regex re(R"(^(\d+)(ms|s|m|h)$)");
  std::smatch m;
  if (!std::regex_match(text, m, re)) return std::nullopt;
  long long n = std::stoll(m[1]);
  std::string unit = m[2];
  long long mul = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : 3600000;
  return std::chrono::milliseconds(n * mul);
}

std::string defaultDb() {
  if (const char* env = std::getenv("DINGO_NSCLIENT_DB"); env && *env) return env;
  if (::geteuid() == 0) return "/var/lib/dingo/nsclient.db";
  if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state) return std::string(state) + "/dingo/nsclient.db";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/state/dingo/nsclient.db";
}

bool validChannel(const std::string& c) {
  if (c.empty() || c.size() > 255 || c[0] != '/') return false;
  for (char ch : c)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && !std::strchr("_.:/-", ch)) return false;
  return true;
}

json candidateJson(const Candidate& c) {
  return {{"host", c.endpoint.host},   {"port", c.endpoint.port},
          {"source", sourceName(c.source)}, {"age_s", static_cast<int64_t>(c.age_s)},
          {"score", std::round(c.score * 10) / 10}, {"tls", c.endpoint.tls}, {"stale", c.stale}};
}

std::string age(double s) {
  if (s < 120) return std::to_string(static_cast<int64_t>(s)) + "s";
  if (s < 7200) return std::to_string(static_cast<int64_t>(s / 60)) + "m";
  if (s < 172800) return std::to_string(static_cast<int64_t>(s / 3600)) + "h";
  return std::to_string(static_cast<int64_t>(s / 86400)) + "d";
}

void printCandidates(const std::vector<Candidate>& cands) {
  std::printf("%-3s %-42s %-8s %6s %7s %s\n", "#", "ENDPOINT", "SOURCE", "AGE", "SCORE", "");
  int i = 0;
  for (const auto& c : cands)
    std::printf("%-3d %-42s %-8s %6s %7.1f %s%s\n", ++i, c.endpoint.toString().c_str(), sourceName(c.source),
                age(c.age_s).c_str(), c.score, c.endpoint.tls ? "tls" : "plain", c.stale ? " stale" : "");
}

void printNotes(const std::vector<std::string>& notes) {
  for (const auto& n : notes)
    if (!n.empty()) std::fprintf(stderr, "dingo-nsclient: %s\n", n.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dingo-nsclient: find a live dingo gateway (DNS primary and backup, stored node list, seeds; "
               "a staggered race with verified TLS) and stay connected"};
  app.set_version_flag("-V,--version", "dingo-nsclient " DINGO_NSCLIENT_VERSION);
  app.require_subcommand(1);
  app.fallthrough();

  Options o;
  o.db_path = defaultDb();
  std::vector<std::string> seeds;
  std::string timeout = "5s", stagger = "250ms", dns_timeout = "1s";
  bool as_json = false, plain = false;
  app.add_option("--db", o.db_path, "The SQLite store (default: $DINGO_NSCLIENT_DB, /var/lib/dingo/nsclient.db as "
                                    "root, else ~/.local/state/dingo/nsclient.db)");
  app.add_option("--primary", o.primary, "The primary domain; also the TLS name verified");
  app.add_option("--backup", o.backup, "The backup domain, used when the primary domain does not resolve");
  app.add_option("--port", o.port, "The port of the addresses DNS gives")->capture_default_str();
  app.add_option("--seed", seeds, "A seed endpoint IP:PORT, tried last (repeatable)");
  app.add_option("--dns-server", o.dns_server, "Ask this DNS server (IP:PORT) instead of the system's");
  app.add_option("--ca", o.ca_file, "Trust this CA file (PEM) instead of the system's store");
  app.add_option("--server-name", o.server_name, "The TLS name to verify (default: --primary)");
  app.add_flag("--plain", plain, "Dial DNS answers and seeds without TLS (development only)");
  app.add_option("--timeout", timeout, "Per attempt: connect, TLS and the gateway's answer")->capture_default_str();
  app.add_option("--stagger", stagger, "Delay between attempts of a race (kept in 100ms..2s)")->capture_default_str();
  app.add_option("--dns-timeout", dns_timeout, "For both DNS names, asked together")->capture_default_str();
  app.add_flag("--json", as_json, "Machine-readable output");

  auto* resolve = app.add_subcommand("resolve", "Print the candidates in the order they would be tried");
  auto* refresh = app.add_subcommand("refresh", "Fetch GET /v1/nodes from a gateway and store the list");
  auto* list = app.add_subcommand("list", "Print the stored endpoints");
  auto* probe = app.add_subcommand("probe", "Connect to every candidate (TLS and /healthz) and report RTT");
  auto* forget = app.add_subcommand("forget", "Remove a stored endpoint, or everything with --all");
  std::string forget_what;
  bool forget_all = false;
  forget->add_option("endpoint", forget_what, "IP:PORT");
  forget->add_flag("--all", forget_all, "Forget every endpoint, DNS answer and the node list");
  auto* connect = app.add_subcommand("connect", "Subscribe over WebSocket and print each message as a JSON line; "
                                                "reconnect and resume from the last position on a drop");
  std::vector<std::string> channels, since;
  std::string keepalive = "15s";
  size_t count = 0;
  connect->add_option("--channel", channels, "A channel to subscribe to (repeatable)")->required();
  connect->add_option("--since", since, "Resume CHANNEL from POSITION: CHANNEL@POSITION (repeatable)");
  connect->add_option("--keepalive", keepalive, "Ping the gateway this often; no answer within it means it is gone")
      ->capture_default_str();
  connect->add_option("--count", count, "Exit 0 after this many messages (default: run until stopped)");
  std::string retry_initial = "1s", retry_max = "120s", drop_spread = "8s", stable_after = "30s";
  double retry_multiplier = 1.6;
  connect->add_option("--retry-initial", retry_initial, "Reconnect policy: the first backoff ceiling")
      ->capture_default_str();
  connect->add_option("--retry-multiplier", retry_multiplier, "Reconnect policy: the ceiling grows by this")
      ->capture_default_str();
  connect->add_option("--retry-max", retry_max, "Reconnect policy: the largest ceiling")->capture_default_str();
  connect->add_option("--drop-spread", drop_spread,
                      "Reconnect policy: the first retry after a dropped connection is drawn over at least this")
      ->capture_default_str();
  connect->add_option("--stable-after", stable_after, "Reconnect policy: a connection up this long resets the backoff")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return e.get_exit_code() == 0 ? rc : 2;
  }
  auto usage = [](const std::string& what) {
    std::fprintf(stderr, "dingo-nsclient: %s\n", what.c_str());
    return 2;
  };
  auto t = parseDuration(timeout), s = parseDuration(stagger), d = parseDuration(dns_timeout),
       k = parseDuration(keepalive);
  if (!t || t->count() == 0) return usage("--timeout: '" + timeout + "' is not a duration (250ms, 5s, 2m)");
  if (!s) return usage("--stagger: '" + stagger + "' is not a duration");
  if (!d || d->count() == 0) return usage("--dns-timeout: '" + dns_timeout + "' is not a duration");
  if (!k || k->count() == 0) return usage("--keepalive: '" + keepalive + "' is not a duration");
  o.attempt_timeout = *t;
  o.stagger = *s;
  o.dns_timeout = *d;
  o.tls = !plain;
  if (!o.dns_server.empty() && !parseEndpoint(o.dns_server))
    return usage("--dns-server: '" + o.dns_server + "' is not IP:PORT");
  std::string builtin = DINGO_NSCLIENT_SEEDS;
  for (size_t at = 0; !builtin.empty() && at <= builtin.size();) {
    size_t comma = builtin.find(',', at);
    std::string one = builtin.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (!one.empty()) seeds.push_back(one);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  for (const auto& seed : seeds) {
    auto ep = parseEndpoint(seed, o.tls);
    if (!ep) return usage("--seed: '" + seed + "' is not IP:PORT");
    o.seeds.push_back(*ep);
  }
  SubscribeOptions so;
  so.keepalive = *k;
  {
    auto ri = parseDuration(retry_initial), rm = parseDuration(retry_max), ds = parseDuration(drop_spread),
         sa = parseDuration(stable_after);
    if (!ri || !rm || !ds || !sa) return usage("--retry-initial, --retry-max, --drop-spread, --stable-after take durations (250ms, 5s, 2m)");
    so.policy.initial = *ri;
    so.policy.max = *rm;
    so.policy.multiplier = retry_multiplier;
    so.policy.dropSpread = *ds;
    so.policy.stable = *sa;
    try {
      validate(so.policy);
    } catch (const std::invalid_argument& e) {
      return usage(std::string("reconnect policy: ") + e.what());
    }
  }
  for (const auto& c : channels) {
    if (!validChannel(c)) return usage("--channel: '" + c + "' is not a channel (1-255 of [A-Za-z0-9_.:/-], starting with /)");
    so.channels.push_back(c);
  }
  for (const auto& sp : since) {
    size_t at = sp.rfind('@');
    if (at == std::string::npos || !validChannel(sp.substr(0, at)) || at + 1 == sp.size())
      return usage("--since: '" + sp + "' is not CHANNEL@POSITION");
    so.since[sp.substr(0, at)] = sp.substr(at + 1);
  }
  std::optional<Endpoint> forget_ep;
  if (*forget) {
    if (forget_all == !forget_what.empty()) return usage("forget: give one IP:PORT, or --all");
    if (!forget_all && !(forget_ep = parseEndpoint(forget_what))) return usage("forget: '" + forget_what + "' is not IP:PORT");
  }

  try {
    Resolver resolver(o);
    std::vector<std::string> notes;
    printNotes({resolver.store().recovered()});
    if (*resolve) {
      auto cands = resolver.candidates(&notes);
      printNotes(notes);
      if (as_json) {
        json arr = json::array();
        for (const auto& c : cands) arr.push_back(candidateJson(c));
        std::cout << json{{"candidates", arr}}.dump() << "\n";
      } else {
        printCandidates(cands);
      }
      if (cands.empty()) {
        std::fprintf(stderr, "dingo-nsclient: no candidates: DNS gave nothing, the store is empty, no seeds\n");
        return 1;
      }
      return 0;
    }
    if (*list) {
      auto meta = resolver.store().nodesMeta();
      int64_t now = unixNow();
      std::vector<Candidate> cands;
      json arr = json::array();
      for (const auto& e : resolver.store().listed()) {
        bool stale = !meta || meta->refreshed_at + meta->ttl_s <= now;
        Candidate c{Endpoint{e.host, e.port, e.tls}, Source::Store, static_cast<double>(now - e.listed_at), stale, 0};
        c.score = resolver.score(c);
        json j = candidateJson(c);
        j["successes"] = std::round(Store::decayed(e.successes, e.last_success, now) * 100) / 100;
        j["failures"] = std::round(Store::decayed(e.failures, e.last_failure, now) * 100) / 100;
        j["rtt_ms"] = std::round(e.rtt_ms * 10) / 10;
        arr.push_back(j);
        cands.push_back(c);
      }
      if (as_json) {
        json out = {{"candidates", arr}};
        if (meta) out["nodes"] = {{"version", meta->version}, {"ttl_s", meta->ttl_s}, {"refreshed_at", meta->refreshed_at}};
        std::cout << out.dump() << "\n";
      } else {
        if (meta)
          std::printf("node list version %llu, ttl %llds, refreshed %s ago\n",
                      static_cast<unsigned long long>(meta->version), static_cast<long long>(meta->ttl_s),
                      age(static_cast<double>(now - meta->refreshed_at)).c_str());
        else
          std::printf("no node list stored (run: dingo-nsclient refresh)\n");
        printCandidates(cands);
      }
      return 0;
    }
    if (*forget) {
      int n = forget_all ? resolver.store().forgetAll() : resolver.store().forget(forget_ep->host, forget_ep->port);
      if (as_json) std::cout << json{{"forgotten", n}}.dump() << "\n";
      else std::printf("forgot %d endpoint(s)\n", n);
      return 0;
    }
    if (*refresh) {
      auto r = resolver.refresh();
      if (as_json) {
        json j = {{"ok", r.ok}};
        if (r.ok) j.update({{"from", r.from}, {"version", r.version}, {"ttl_s", r.ttl_s}, {"nodes", r.nodes}, {"changed", r.changed}});
        else j["error"] = r.error;
        std::cout << j.dump() << "\n";
      } else if (r.ok) {
        std::printf("stored %zu node(s) from %s: version %llu, ttl %llds%s\n", r.nodes, r.from.c_str(),
                    static_cast<unsigned long long>(r.version), static_cast<long long>(r.ttl_s),
                    r.changed ? "" : " (unchanged)");
      }
      if (!r.ok) std::fprintf(stderr, "dingo-nsclient: refresh failed: %s\n", r.error.c_str());
      return r.ok ? 0 : 1;
    }
    if (*probe) {
      auto cands = resolver.candidates(&notes);
      printNotes(notes);
      auto results = resolver.probeAll(cands);
      bool any = false;
      json arr = json::array();
      if (!as_json) std::printf("%-42s %-8s %-4s %9s  %s\n", "ENDPOINT", "SOURCE", "OK", "RTT", "ERROR");
      for (const auto& a : results) {
        any = any || a.ok;
        if (as_json) {
          json j = candidateJson(a.candidate);
          j["ok"] = a.ok;
          j["rtt_ms"] = std::round(a.ms * 10) / 10;
          if (!a.ok) j["error"] = a.error;
          arr.push_back(j);
        } else {
          std::printf("%-42s %-8s %-4s %7.1fms  %s\n", a.candidate.endpoint.toString().c_str(),
                      sourceName(a.candidate.source), a.ok ? "yes" : "no", a.ms, a.error.c_str());
        }
      }
      if (as_json) std::cout << json{{"results", arr}}.dump() << "\n";
      if (cands.empty()) std::fprintf(stderr, "dingo-nsclient: no candidates to probe\n");
      return any ? 0 : 1;
    }
    if (*connect) {
      Subscriber sub(resolver, so);
      g_subscriber = &sub;
      std::signal(SIGINT, [](int) { g_subscriber->stop(); });
      std::signal(SIGTERM, [](int) { g_subscriber->stop(); });
      std::signal(SIGPIPE, SIG_IGN);
      size_t seen = 0;
      int rc = sub.run([&](const SubscriberEvent& e) {
        using K = SubscriberEvent::Kind;
        if (e.kind == K::Message) {
          std::printf("{\"channel\":%s,\"position\":%s,\"data\":%s}\n", json(e.channel).dump().c_str(),
                      json(e.position).dump().c_str(), e.data.c_str());
          std::fflush(stdout);
          return count == 0 || ++seen < count;
        }
        if (as_json) {
          // Everything but messages, as one JSON object a line on standard error.
          static const char* const kNames[] = {"connected", "subscribed", "message", "disconnected", "waiting",
                                               "refreshed"};
          json j = {{"event", kNames[static_cast<int>(e.kind)]}};
          switch (e.kind) {
            case K::Connected: j.update({{"endpoint", e.endpoint}, {"rtt_ms", std::round(e.rtt_ms * 10) / 10}}); break;
            case K::Subscribed: j.update({{"channel", e.channel}, {"position", e.position}, {"recovered", e.recovered}}); break;
            case K::Disconnected: j["reason"] = e.reason; break;
            case K::Waiting: j.update({{"delay_ms", e.delay_ms}, {"reason", e.reason}}); break;
            case K::Refreshed: j.update({{"ok", e.recovered}, {"from", e.endpoint}, {"detail", e.reason}}); break;
            case K::Message: break;
          }
          std::fprintf(stderr, "%s\n", j.dump().c_str());
          return true;
        }
        switch (e.kind) {
          case K::Message:
            break;  // printed above
          case K::Connected:
            std::fprintf(stderr, "dingo-nsclient: connected to %s in %.1f ms\n", e.endpoint.c_str(), e.rtt_ms);
            break;
          case K::Subscribed:
            std::fprintf(stderr, "dingo-nsclient: subscribed %s at %s%s\n", e.channel.c_str(), e.position.c_str(),
                         e.recovered ? "" : " (recovered: false: messages may have been missed)");
            break;
          case K::Disconnected:
            std::fprintf(stderr, "dingo-nsclient: disconnected: %s\n", e.reason.c_str());
            break;
          case K::Refreshed:
            if (e.recovered)
              std::fprintf(stderr, "dingo-nsclient: node list refreshed from %s: %s\n", e.endpoint.c_str(), e.reason.c_str());
            else
              std::fprintf(stderr, "dingo-nsclient: refreshing the node list failed: %s\n", e.reason.c_str());
            break;
          case K::Waiting:
            std::fprintf(stderr, "dingo-nsclient: reconnecting in %lld ms (%s)\n", static_cast<long long>(e.delay_ms),
                         e.reason.c_str());
            break;
        }
        return true;
      });
      return rc;
    }
  } catch (const StoreError& e) {
    std::fprintf(stderr, "dingo-nsclient: store: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dingo-nsclient: %s\n", e.what());
    return 1;
  }
  return 0;
}
