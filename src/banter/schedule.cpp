#include <chimera/banter/schedule.hpp>

#include <algorithm>
#include <set>

namespace chimera::banter {

Scheduler::Scheduler(std::vector<int> lane_limits, int64_t grace_ns, int background_limit)
    : limits_(std::move(lane_limits)),
      in_flight_(limits_.size(), 0),
      background_in_flight_(limits_.size(), 0),
      background_limit_(background_limit),
      quiet_since_(limits_.size(), INT64_MIN / 2),
      grace_ns_(grace_ns) {}

Scheduler::Id Scheduler::submit(const Job& job) {
  const Id id = next_id_++;
  Entry e;
  e.job = job;
  e.job.lane = std::clamp(job.lane, 0, static_cast<int>(limits_.size()) - 1);
  e.id = id;
  jobs_.emplace(id, e);
  return id;
}

bool Scheduler::remove(Id id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || it->second.running) return false;
  jobs_.erase(it);
  return true;
}

bool Scheduler::background_blocked(int lane, int64_t now_ns) const {
  bool streaming = false;
  for (const auto& [id, e] : jobs_) {
    if (e.job.lane != lane || e.job.priority != Priority::live) continue;
    if (!e.running || !e.first_token) return true;
    streaming = true;
  }
  // The grace period only guards the moment between two lines: once the next live line
  // streams, the host has asked for what it wanted first.
  return !streaming && now_ns < quiet_since_[std::size_t(lane)] + grace_ns_;
}

std::vector<Scheduler::Id> Scheduler::take_ready(int64_t now_ns) {
  std::vector<Entry*> waiting;
  std::set<int> busy_actors;
  for (auto& [id, e] : jobs_) {
    if (e.running) {
      if (e.job.actor >= 0) busy_actors.insert(e.job.actor);
    } else {
      waiting.push_back(&e);
    }
  }
  std::sort(waiting.begin(), waiting.end(), [](const Entry* a, const Entry* b) {
    if (a->job.priority != b->job.priority) return a->job.priority < b->job.priority;
    if (a->job.deadline_ns != b->job.deadline_ns) return a->job.deadline_ns < b->job.deadline_ns;
    return a->id < b->id;
  });
  std::vector<Id> out;
  std::vector<bool> lane_closed(limits_.size(), false);
  std::vector<int> blocked(limits_.size(), -1);  // -1 unknown, 0 no, 1 yes
  for (Entry* e : waiting) {
    const auto lane = std::size_t(e->job.lane);
    if (lane_closed[lane]) continue;
    if (e->job.priority == Priority::background) {
      if (blocked[lane] < 0) blocked[lane] = background_blocked(e->job.lane, now_ns) ? 1 : 0;
      if (blocked[lane] == 1) continue;
      if (background_limit_ > 0 && background_in_flight_[lane] >= background_limit_) continue;
    }
    if (limits_[lane] > 0 && in_flight_[lane] >= limits_[lane]) {
      lane_closed[lane] = true;
      continue;
    }
    if (e->job.actor >= 0 && busy_actors.count(e->job.actor) != 0) continue;
    e->running = true;
    ++in_flight_[lane];
    if (e->job.priority == Priority::background) ++background_in_flight_[lane];
    if (e->job.actor >= 0) busy_actors.insert(e->job.actor);
    if (e->job.priority == Priority::live) blocked[lane] = 1;  // now before its first token
    out.push_back(e->id);
  }
  return out;
}

void Scheduler::first_token(Id id) {
  auto it = jobs_.find(id);
  if (it != jobs_.end()) it->second.first_token = true;
}

void Scheduler::finished(Id id, int64_t now_ns) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  if (it->second.running) {
    const auto lane = std::size_t(it->second.job.lane);
    --in_flight_[lane];
    if (it->second.job.priority == Priority::live) quiet_since_[lane] = now_ns;
    if (it->second.job.priority == Priority::background) --background_in_flight_[lane];
  }
  jobs_.erase(it);
}

std::optional<int64_t> Scheduler::next_wake(int64_t now_ns) const {
  std::optional<int64_t> wake;
  for (const auto& [id, e] : jobs_) {
    if (e.running || e.job.priority != Priority::background) continue;
    const int64_t t = quiet_since_[std::size_t(e.job.lane)] + grace_ns_;
    if (t > now_ns && (!wake || t < *wake)) wake = t;
  }
  return wake;
}

bool Scheduler::is_queued(Id id) const {
  auto it = jobs_.find(id);
  return it != jobs_.end() && !it->second.running;
}

bool Scheduler::is_running(Id id) const {
  auto it = jobs_.find(id);
  return it != jobs_.end() && it->second.running;
}

std::size_t Scheduler::queued() const {
  return static_cast<std::size_t>(
      std::count_if(jobs_.begin(), jobs_.end(), [](const auto& p) { return !p.second.running; }));
}

std::size_t Scheduler::running() const {
  return jobs_.size() - queued();
}

}  // namespace chimera::banter
