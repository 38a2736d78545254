#include <chimera/pool/router.hpp>

#include <algorithm>

namespace chimera::pool {

const char* to_string(Routing r) {
  switch (r) {
    case Routing::pinned:
      return "pinned";
    case Routing::round_robin:
      return "round-robin";
    case Routing::least_outstanding:
      return "least-outstanding";
    case Routing::session_affinity:
      return "session-affinity";
  }
  return "?";
}

std::optional<Routing> parse_routing(std::string_view name) {
  std::string n(name);
  std::replace(n.begin(), n.end(), '_', '-');
  for (Routing r : {Routing::pinned, Routing::round_robin, Routing::least_outstanding,
                    Routing::session_affinity}) {
    if (n == to_string(r)) return r;
  }
  return std::nullopt;
}

Router::Router(std::vector<int> limits, Routing routing, BreakerConfig breaker)
    : routing_(routing), breaker_(breaker) {
  endpoints_.resize(limits.size());
  for (std::size_t i = 0; i < limits.size(); ++i) endpoints_[i].limit = std::max(0, limits[i]);
}

Router::Ticket Router::enqueue(Want want) {
  const Ticket t = next_ticket_++;
  auto& q = queues_[want.key];
  if (q.empty()) active_.push_back(want.key);
  if (want.front) {
    q.push_front(t);
  } else {
    q.push_back(t);
  }
  entries_.emplace(t, Entry{std::move(want), true});
  ++queued_;
  return t;
}

bool Router::remove(Ticket ticket) {
  auto it = entries_.find(ticket);
  if (it == entries_.end() || !it->second.live) return false;
  it->second.live = false;  // its queue drops it when it reaches the head
  --queued_;
  return true;
}

bool Router::usable(int e, const Want& want) const {
  const auto& ep = endpoints_[std::size_t(e)];
  if (!ep.up || ep.retired) return false;
  return std::find(want.exclude.begin(), want.exclude.end(), e) == want.exclude.end();
}

bool Router::has_room(int e) const {
  const auto& ep = endpoints_[std::size_t(e)];
  return ep.limit == 0 || ep.outstanding < ep.limit;
}

int Router::least_outstanding(const Want& want, int avoid) const {
  const int n = static_cast<int>(endpoints_.size());
  int best = -1;
  // Ties go to the endpoint after the last one chosen, so equal endpoints share the load.
  for (int i = 0; i < n; ++i) {
    const int e = static_cast<int>((tie_cursor_ + std::size_t(i)) % std::size_t(n));
    if (e == avoid || !usable(e, want) || !has_room(e)) continue;
    if (best < 0 ||
        endpoints_[std::size_t(e)].outstanding < endpoints_[std::size_t(best)].outstanding) {
      best = e;
    }
  }
  return best;
}

int Router::choose(const Want& want, int64_t /*now_ns*/) {
  const int n = static_cast<int>(endpoints_.size());
  if (n == 0) return -1;
  switch (routing_) {
    case Routing::pinned: {
      const int p = ((want.pin % n) + n) % n;
      if (want.pin >= 0 && usable(p, want)) return has_room(p) ? p : -1;
      return least_outstanding(want, -1);  // no pin, or its endpoint is down: fail over
    }
    case Routing::session_affinity: {
      if (want.session.empty()) return least_outstanding(want, -1);
      auto it = sessions_.find(want.session);
      if (it != sessions_.end() && usable(it->second, want)) {
        return has_room(it->second) ? it->second : -1;  // wait for it: its cache is there
      }
      const int e = least_outstanding(want, -1);
      if (e >= 0) sessions_[want.session] = e;  // first request, or its endpoint is down
      return e;
    }
    case Routing::round_robin: {
      for (int i = 0; i < n; ++i) {
        const int e = static_cast<int>((rr_cursor_ + std::size_t(i)) % std::size_t(n));
        if (usable(e, want) && has_room(e)) {
          rr_cursor_ = std::size_t(e) + 1;
          return e;
        }
      }
      return -1;
    }
    case Routing::least_outstanding:
      return least_outstanding(want, -1);
  }
  return -1;
}

std::optional<std::pair<Router::Ticket, int>> Router::next(int64_t now_ns) {
  for (std::size_t tries = active_.size(); tries > 0 && !active_.empty(); --tries) {
    std::string key = std::move(active_.front());
    active_.pop_front();
    auto qit = queues_.find(key);
    if (qit == queues_.end()) continue;
    auto& q = qit->second;
    while (!q.empty() && !entries_.at(q.front()).live) {
      entries_.erase(q.front());
      q.pop_front();
    }
    if (q.empty()) {
      queues_.erase(qit);
      continue;
    }
    const Ticket t = q.front();
    const int e = choose(entries_.at(t).want, now_ns);
    if (e < 0) {
      active_.push_back(std::move(key));  // its head must wait; others may go
      continue;
    }
    q.pop_front();
    entries_.erase(t);
    --queued_;
    if (q.empty()) {
      queues_.erase(qit);
    } else {
      active_.push_back(std::move(key));  // round-robin: its next request waits its turn
    }
    dispatch(e);
    return std::make_pair(t, e);
  }
  return std::nullopt;
}

std::optional<int> Router::place_now(const Want& want, int64_t now_ns) {
  if (queued_ != 0) return std::nullopt;
  const int e = choose(want, now_ns);
  if (e < 0) return std::nullopt;
  dispatch(e);
  return e;
}

void Router::dispatch(int e) {
  auto& ep = endpoints_[std::size_t(e)];
  ++ep.outstanding;
  ++ep.dispatched;
  tie_cursor_ = std::size_t(e) + 1;
}

bool Router::unplaceable(const Want& want) const {
  for (int e = 0; e < static_cast<int>(endpoints_.size()); ++e) {
    if (usable(e, want)) return false;
  }
  return true;
}

std::vector<Router::Ticket> Router::take_unplaceable() {
  std::vector<Ticket> out;
  for (auto& [t, entry] : entries_) {
    if (entry.live && unplaceable(entry.want)) {
      entry.live = false;
      --queued_;
      out.push_back(t);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<int> Router::extra(const Want& want, int busy, int64_t /*now_ns*/) {
  const int e = least_outstanding(want, busy);
  if (e < 0) return std::nullopt;
  auto& ep = endpoints_[std::size_t(e)];
  ++ep.outstanding;
  ++ep.dispatched;
  return e;
}

void Router::release(int endpoint) {
  auto& ep = endpoints_.at(std::size_t(endpoint));
  if (ep.outstanding > 0) --ep.outstanding;
}

void Router::failed(int endpoint, int64_t now_ns, std::string why) {
  auto& ep = endpoints_.at(std::size_t(endpoint));
  ++ep.failures;
  int64_t backoff = breaker_.base_backoff_ms;
  for (int i = 1; i < ep.failures && backoff < breaker_.max_backoff_ms; ++i) backoff *= 2;
  backoff = std::min(backoff, breaker_.max_backoff_ms);
  ep.up = false;
  ep.down_until_ns = now_ns + backoff * 1'000'000;
  ep.last_error = std::move(why);
}

void Router::succeeded(int endpoint) {
  auto& ep = endpoints_.at(std::size_t(endpoint));
  ep.up = true;
  ep.failures = 0;
  ep.last_error.clear();
}

std::vector<int> Router::due_for_probe(int64_t now_ns) const {
  std::vector<int> out;
  for (int e = 0; e < static_cast<int>(endpoints_.size()); ++e) {
    const auto& ep = endpoints_[std::size_t(e)];
    if (!ep.up && !ep.retired && now_ns >= ep.down_until_ns) out.push_back(e);
  }
  return out;
}

int Router::add(int limit) {
  EndpointLoad ep;
  ep.limit = std::max(0, limit);
  endpoints_.push_back(std::move(ep));
  return static_cast<int>(endpoints_.size()) - 1;
}

void Router::retire(int endpoint, bool retired) {
  auto& ep = endpoints_.at(std::size_t(endpoint));
  ep.retired = retired;
  if (!retired) {  // back: as new, not as it was when it left
    ep.up = true;
    ep.failures = 0;
    ep.last_error.clear();
  }
}

int Router::session_endpoint(const std::string& session) const {
  auto it = sessions_.find(session);
  return it == sessions_.end() ? -1 : it->second;
}

}  // namespace chimera::pool
