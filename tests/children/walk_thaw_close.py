"""A heap closed while a walk in another thread frees what was dropped during it: the walk hung on itself. The thaw
freed the deferred blocks while the walk still held the world lock, the close landed in that drain (the heap was
no longer frozen), and the free of the last block, which releases a closed heap, waited for that same lock (a
review's stress test; 3 runs of 4 hung). Each round: Blocks, a walk in a thread, the Blocks dropped while it holds
the heap frozen, and the heap closed as soon as it lets go; until the close has landed in the drain 3 times, or
300 rounds. How often it lands there is timing: about half the rounds of a release build on an idle machine, one
in hundreds in a checked build or under load; the test is skipped if it never did. run_program's timeout catches
a hang."""

import threading

import pymimalloc

WANTED, MAX_ROUNDS, SIZES = 3, 300, (20_000, 40_000)
closed_in_the_drain = rounds = 0
while closed_in_the_drain < WANTED and rounds < MAX_ROUNDS:
    heap = pymimalloc.Heap()
    blocks = [heap.malloc(64) for _ in range(SIZES[rounds % len(SIZES)])]
    rounds += 1
    walker = threading.Thread(target=heap.blocks)
    walker.start()
    while not heap.frozen and walker.is_alive():
        pass
    blocks.clear()  # deferred while the walk holds the heap frozen
    while True:
        try:
            heap.close()
            break
        except RuntimeError:  # still frozen: the walk has not let go yet
            pass
    closed_in_the_drain += heap.live_blocks > 0  # closed while the walk still freed what was deferred
    walker.join()
    assert heap.live_blocks == 0, heap.live_blocks
print("OK", closed_in_the_drain, rounds)
