// Which request of a scene goes next: deadline-aware scheduling of lines and background work.
//
// Every request a scene makes is a job on a lane (one backend: an in-process model, or a pool)
// for an actor (a character's session, or the director's). A job starts when:
// - its lane has room (`limit` jobs in flight; 0: no limit);
// - its actor has no other job in flight (a session serves one turn at a time);
// - it is the best waiting job of its lane: live before background, then the earliest deadline,
//   then the oldest. When the best job cannot start because its lane is full, nothing later on
//   that lane starts either (a later deadline never takes the slot a sooner one is waiting for);
//   when it waits for its actor, the next one may go;
// - for background work (warm-ups of new lines, window moves): no live job of its lane is waiting
//   or still before its first token, and either a live job of its lane is streaming or `grace`
//   has passed since the lane's last live job ended, so that a host that asks for the next line
//   right after the last one gets it first; and fewer than `background_limit` background jobs
//   of its lane are in flight (one by default: a live line that must wait for its character's
//   background prefill then waits for one short prefill, not for a batch of them).
//
// Pure bookkeeping: no threads, no clock of its own (every call that needs the time is given
// it), so that decisions can be tested with a fake clock. Not thread-safe: the scene owns one
// behind its mutex.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace chimera::banter {

enum class Priority { live, background };

class Scheduler {
 public:
  using Id = uint64_t;

  struct Job {
    int lane = 0;
    int actor = -1;  // -1: no actor (never blocked by another job)
    Priority priority = Priority::live;
    int64_t deadline_ns = 0;
  };

  // One limit per lane (0: no limit). `grace_ns`, `background_limit`: see the header comment.
  explicit Scheduler(std::vector<int> lane_limits, int64_t grace_ns = 20'000'000,
                     int background_limit = 1);

  Id submit(const Job& job);
  // Takes a queued job out. False when it is not queued (already started, or unknown).
  bool remove(Id id);
  // The jobs that may start now, in the order to start them; each is marked running.
  std::vector<Id> take_ready(int64_t now_ns);
  // A running live job produced its first token: it no longer holds back background work.
  void first_token(Id id);
  // A running job ended (or a queued one that will not run; then it is simply forgotten).
  void finished(Id id, int64_t now_ns);
  // The earliest time after `now_ns` at which take_ready() may return a job that it would not
  // return now only because of the grace period; nullopt when there is none.
  std::optional<int64_t> next_wake(int64_t now_ns) const;

  bool is_queued(Id id) const;
  bool is_running(Id id) const;
  std::size_t queued() const;
  std::size_t running() const;

 private:
  struct Entry {
    Job job;
    Id id = 0;
    bool running = false;
    bool first_token = false;
  };
  bool background_blocked(int lane, int64_t now_ns) const;

  std::vector<int> limits_;
  std::vector<int> in_flight_;
  std::vector<int> background_in_flight_;
  int background_limit_;
  std::vector<int64_t> quiet_since_;  // per lane: when its last live job ended
  int64_t grace_ns_;
  Id next_id_ = 1;
  std::map<Id, Entry> jobs_;
};

}  // namespace chimera::banter
