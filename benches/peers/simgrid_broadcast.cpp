// The `agora bench` workload written for SimGrid (S4U, C++): one origin
// broadcasts COUNT values, one every millisecond, to N-1 receivers; each
// receiver acknowledges each value to the origin. Every host hangs off a
// cluster with 2.5 ms links, so any message takes 5 ms, as in the Agora
// scenario `run.sh` generates. Mailboxes have permanent receivers so that
// messages flow eagerly, as on a network, instead of SimGrid's default
// rendezvous (where each send waits for the matching receive).
//
//   simgrid_broadcast N COUNT PLATFORM.xml [--cfg=...]
#include <simgrid/s4u.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sg4 = simgrid::s4u;

static int N;
static int COUNT;

static void origin()
{
  std::vector<sg4::Mailbox*> peers;
  for (int i = 1; i < N; i++)
    peers.push_back(sg4::Mailbox::by_name(std::to_string(i)));
  for (int v = 0; v < COUNT; v++) {
    sg4::this_actor::sleep_for(0.001);
    for (auto* mb : peers)
      mb->put_init(new int(v), 24)->detach();
  }
}

// The origin's receiving side, on the origin's host: takes acks as they
// arrive, so they never pile up in the mailbox.
static void collector()
{
  sg4::Mailbox* acks = sg4::Mailbox::by_name("0");
  acks->set_receiver(sg4::Actor::self());
  long expected = (long)COUNT * (N - 1);
  for (long i = 0; i < expected; i++)
    delete acks->get<int>();
}

static void receiver(int id)
{
  sg4::Mailbox* mine = sg4::Mailbox::by_name(std::to_string(id));
  mine->set_receiver(sg4::Actor::self()); // eager, like a network: no rendezvous
  sg4::Mailbox* acks = sg4::Mailbox::by_name("0");
  for (int v = 0; v < COUNT; v++) {
    int* value = mine->get<int>();
    acks->put_init(value, 24)->detach();
  }
}

int main(int argc, char** argv)
{
  sg4::Engine e(&argc, argv);
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s N COUNT PLATFORM.xml\n", argv[0]);
    return 2;
  }
  N     = std::atoi(argv[1]);
  COUNT = std::atoi(argv[2]);
  e.load_platform(argv[3]);
  sg4::Actor::create("origin", e.host_by_name("h0"), origin);
  sg4::Actor::create("collector", e.host_by_name("h0"), collector);
  for (int i = 1; i < N; i++)
    sg4::Actor::create("r", e.host_by_name("h" + std::to_string(i)), receiver, i);
  e.run();
  std::printf("{\"simulated_s\": %f, \"messages\": %ld}\n", sg4::Engine::get_clock(), 2L * COUNT * (N - 1));
  return 0;
}
