// The allocator of the objects made once per request (src/core/recycling_allocator.hpp): a freed
// block is handed out again on the same thread, a thread keeps a bounded number of them, and a
// block made on one thread may be freed on another.
#include "core/recycling_allocator.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace {

struct Big {
  std::array<char, 1800> bytes{};  // above glibc's per-thread cache, as a pool's request
  int id = 0;
  explicit Big(int i) : id(i) {}
};

using chimera::RecyclingAllocator;

TEST(RecyclingAllocator, AFreedBlockIsHandedOutAgainOnTheSameThread) {
  // On a thread of its own, so that no earlier test's blocks are on its list.
  std::thread([] {
    auto a = std::allocate_shared<Big>(RecyclingAllocator<Big>{}, 1);
    const Big* first = a.get();
    a.reset();
    auto b = std::allocate_shared<Big>(RecyclingAllocator<Big>{}, 2);
    EXPECT_EQ(b.get(), first);
    EXPECT_EQ(b->id, 2);  // constructed again, not left as it was
    EXPECT_EQ(b->bytes[0], 0);
  }).join();
}

TEST(RecyclingAllocator, AThreadKeepsABoundedNumberOfBlocks) {
  std::thread([] {
    const unsigned n = RecyclingAllocator<Big>::kKeep + 16;
    std::vector<std::shared_ptr<Big>> made;
    for (unsigned i = 0; i < n; ++i) {
      made.push_back(std::allocate_shared<Big>(RecyclingAllocator<Big>{}, int(i)));
    }
    std::set<const Big*> freed;
    for (auto& p : made) freed.insert(p.get());
    made.clear();  // kKeep go on the list, the rest back to malloc
    std::set<const Big*> again;
    for (unsigned i = 0; i < RecyclingAllocator<Big>::kKeep; ++i) {
      made.push_back(std::allocate_shared<Big>(RecyclingAllocator<Big>{}, int(i)));
      again.insert(made.back().get());
    }
    EXPECT_EQ(again.size(), RecyclingAllocator<Big>::kKeep);
    for (const Big* p : again) EXPECT_EQ(freed.count(p), 1U);  // every one from the list
  }).join();
}

TEST(RecyclingAllocator, ABlockMadeOnOneThreadIsFreedOnAnother) {
  std::vector<std::shared_ptr<Big>> made;
  std::thread([&] {
    for (int i = 0; i < 100; ++i) {
      made.push_back(std::allocate_shared<Big>(RecyclingAllocator<Big>{}, i));
    }
  }).join();  // the maker's list is gone with it; its blocks live on
  std::thread([&] {
    for (int i = 0; i < 100; ++i) EXPECT_EQ(made[std::size_t(i)]->id, i);
    made.clear();  // freed here: kept on this thread's list, or given back to malloc
    auto p = std::allocate_shared<Big>(RecyclingAllocator<Big>{}, 7);
    EXPECT_EQ(p->id, 7);
  }).join();
}

}  // namespace
