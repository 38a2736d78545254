// A scene's work (private header): the deadline scheduler (schedule.hpp), what each of its jobs
// is for, and the service thread that pumps the scene when a line's first token or end lets
// background work go and when a grace period runs out.
#pragma once

#include <chimera/banter/scene.hpp>
#include <chimera/banter/schedule.hpp>
#include <chimera/core/request.hpp>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace chimera::banter::detail {

enum class JobKind { line, director, catch_up, warm };

struct WarmTracker {
  std::mutex mu;
  std::condition_variable cv;
  int remaining = 0;
  WarmUpReport report;
};

struct JobInfo {
  JobKind kind = JobKind::line;
  int actor = -1;
  std::shared_ptr<Line::State> line;
  std::shared_ptr<WarmTracker> warm;
  std::size_t warm_slot = 0;
  std::size_t upto = 0;  // transcript entries in its prompt
  std::shared_ptr<RequestHandle> handle;
  int64_t t_start = 0;
};

class SceneScheduler {
 public:
  // ---- the queue and its jobs: the scene mutex held ----
  void open(std::vector<int> lane_limits, int64_t grace_ns);
  Scheduler::Id submit(const Scheduler::Job& job, JobInfo info);
  // Takes a queued job out and forgets it; false when it is not queued.
  bool cancel(Scheduler::Id id);
  // A job ended (or was taken and will not run): the queue and the job table forget it.
  void finish(Scheduler::Id id, int64_t now_ns);
  // Takes every queued job out and returns them; the handles of the running ones are added to
  // `running`.
  std::vector<JobInfo> cancel_all(std::vector<std::shared_ptr<RequestHandle>>& running);
  std::vector<Scheduler::Id> take_ready(int64_t now_ns) { return queue_->take_ready(now_ns); }
  std::optional<int64_t> next_wake(int64_t now_ns) const { return queue_->next_wake(now_ns); }
  void first_token(Scheduler::Id id) { queue_->first_token(id); }
  JobInfo& job(Scheduler::Id id) { return jobs_[id]; }
  JobInfo* find(Scheduler::Id id);
  // A line of this actor waits in the queue.
  bool has_queued_line(int actor) const;

  // ---- the service thread: its own mutex, taken after the scene's when both are held ----
  void start_service(std::function<void()> pump);
  // Pump soon, from the service thread.
  void poke();
  // Pump at `t_ns` at the latest.
  void wake_at(int64_t t_ns);
  void stop_service();

 private:
  void service_loop(const std::function<void()>& pump);

  std::unique_ptr<Scheduler> queue_;
  std::map<Scheduler::Id, JobInfo> jobs_;

  std::thread service_;
  std::mutex svc_mu_;
  std::condition_variable svc_cv_;
  bool svc_poke_ = false;
  bool svc_stop_ = false;
  int64_t svc_wake_ = 0;
};

}  // namespace chimera::banter::detail
