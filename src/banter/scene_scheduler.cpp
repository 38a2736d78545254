// A scene's work: see scene_scheduler.hpp.
#include "banter/scene_scheduler.hpp"

#include <algorithm>
#include <chrono>

namespace chimera::banter::detail {

void SceneScheduler::open(std::vector<int> lane_limits, int64_t grace_ns) {
  queue_ = std::make_unique<Scheduler>(std::move(lane_limits), grace_ns);
}

Scheduler::Id SceneScheduler::submit(const Scheduler::Job& job, JobInfo info) {
  const Scheduler::Id id = queue_->submit(job);
  jobs_[id] = std::move(info);
  return id;
}

bool SceneScheduler::cancel(Scheduler::Id id) {
  if (!queue_->remove(id)) return false;
  jobs_.erase(id);
  return true;
}

void SceneScheduler::finish(Scheduler::Id id, int64_t now_ns) {
  queue_->finished(id, now_ns);
  jobs_.erase(id);
}

std::vector<JobInfo> SceneScheduler::cancel_all(
    std::vector<std::shared_ptr<RequestHandle>>& running) {
  std::vector<JobInfo> queued;
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (queue_->remove(it->first)) {
      queued.push_back(std::move(it->second));
      it = jobs_.erase(it);
      continue;
    }
    if (it->second.handle) running.push_back(it->second.handle);
    ++it;
  }
  return queued;
}

JobInfo* SceneScheduler::find(Scheduler::Id id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

bool SceneScheduler::has_queued_line(int actor) const {
  bool has_line = false;
  for (const auto& [id, j] : jobs_) {
    if (j.actor == actor && j.kind == JobKind::line && queue_->is_queued(id)) has_line = true;
  }
  return has_line;
}

void SceneScheduler::start_service(std::function<void()> pump) {
  service_ = std::thread([this, pump = std::move(pump)] { service_loop(pump); });
}

void SceneScheduler::poke() {
  {
    std::lock_guard lock(svc_mu_);
    svc_poke_ = true;
  }
  svc_cv_.notify_one();
}

void SceneScheduler::wake_at(int64_t t_ns) {
  std::lock_guard lock(svc_mu_);
  if (svc_wake_ == 0 || t_ns < svc_wake_) svc_wake_ = t_ns;
  svc_cv_.notify_one();
}

void SceneScheduler::stop_service() {
  {
    std::lock_guard lock(svc_mu_);
    svc_stop_ = true;
  }
  svc_cv_.notify_one();
  if (service_.joinable()) service_.join();
}

void SceneScheduler::service_loop(const std::function<void()>& pump) {
  for (;;) {
    {
      std::unique_lock lock(svc_mu_);
      auto ready = [&] {
        return svc_poke_ || svc_stop_ || (svc_wake_ != 0 && now_ns() >= svc_wake_);
      };
      while (!ready()) {
        if (svc_wake_ != 0) {
          const int64_t wait = std::max<int64_t>(svc_wake_ - now_ns(), 0);
          svc_cv_.wait_for(lock, std::chrono::nanoseconds(wait));
        } else {
          svc_cv_.wait(lock);
        }
      }
      if (svc_stop_) return;
      svc_poke_ = false;
      svc_wake_ = 0;
    }
    pump();
  }
}

}  // namespace chimera::banter::detail
