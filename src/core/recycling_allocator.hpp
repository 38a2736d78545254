// An allocator for the objects made and dropped once per request (private header).
//
// A pool's request and a backend's stream state are 1.8 - 1.9 KiB each, above the largest size
// glibc's per-thread cache keeps (1,032 bytes), so every request took them from malloc's shared
// bins and gave them back there, merging the freed block with its neighbours: about 1,100
// instructions for the pool's request alone (callgrind of `multi` against the synthetic server).
// RecyclingAllocator keeps up to kKeep freed blocks per thread and type, and hands them out again
// before it asks malloc. A block freed on another thread than the one that made it joins that
// other thread's list (they are plain ::operator new memory, which any thread may free); a
// thread's list is freed when the thread ends.
#pragma once

#include <cstddef>
#include <new>

namespace chimera {

template <class T>
class RecyclingAllocator {
 public:
  using value_type = T;
  static constexpr unsigned kKeep = 64;

  RecyclingAllocator() noexcept = default;
  template <class U>
  RecyclingAllocator(const RecyclingAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__,
                  "a block must be one that plain operator new gives");
    if (n == 1 && !ended()) {
      List& list = free_list();
      if (list.head != nullptr) {
        Node* node = list.head;
        list.head = node->next;
        --list.count;
        return reinterpret_cast<T*>(node);
      }
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }

  void deallocate(T* p, std::size_t n) noexcept {
    if (n == 1 && !ended()) {
      List& list = free_list();
      if (list.count < kKeep) {
        list.head = ::new (static_cast<void*>(p)) Node{list.head};
        ++list.count;
        return;
      }
    }
    ::operator delete(p);
  }

  template <class U>
  bool operator==(const RecyclingAllocator<U>&) const noexcept {
    return true;  // stateless: any instance frees what any other made
  }

 private:
  struct Node {
    Node* next;
  };
  static_assert(sizeof(T) >= sizeof(Node), "a freed block holds the list's link");

  struct List {
    Node* head = nullptr;
    unsigned count = 0;
    List() = default;
    List(const List&) = delete;
    List& operator=(const List&) = delete;
    ~List() {
      while (head != nullptr) {
        Node* next = head->next;
        ::operator delete(static_cast<void*>(head));
        head = next;
      }
      ended() = true;  // blocks freed later in the thread's end go back to malloc
    }
  };

  static List& free_list() {
    thread_local List list;
    return list;
  }
  // Trivially destructible, so still readable after the list's destructor has run.
  static bool& ended() {
    thread_local bool gone = false;
    return gone;
  }
};

}  // namespace chimera
