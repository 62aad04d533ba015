"""The engine's admissions: when more requests wait than slots are free and running sequences
end within MERGE_STEPS steps, the free slots wait for them and one prefill admits the lot; a
queue no longer than the free slots is admitted at once. The loop's turns run in this thread."""

import asyncio

from runtime.generate import generate
from runtime.numpy_executor import NumpyExecutor
from runtime.sampling import SamplingParams
from server.engine import MERGE_STEPS, Engine, Request


def _engine(plan):
    engine = Engine(NumpyExecutor(plan), max_queue=16)
    groups = []
    admit = engine.slots.admit

    def counted(sequences):
        groups.append(len(sequences))
        return admit(sequences)

    engine.slots.admit = counted
    return engine, groups


def _requests(prompts, max_tokens, loop):
    return [Request(prompt, max_tokens, SamplingParams(), (), None, loop) for prompt in prompts]


def _run(engine):
    while engine.active or engine.waiting:
        engine._turn()


def test_admission_waits_for_slots_about_to_free(plan):
    loop = asyncio.new_event_loop()
    engine, groups = _engine(plan)
    prompts = [[3 + i, 40 + i, 7] for i in range(8)]
    first = _requests(prompts[:1], 10, loop)
    engine.submit(first[0])
    engine._turn()
    middle = _requests(prompts[1:4], 16, loop)
    for request in middle:
        engine.submit(request)
    engine._turn()  # 3 wait, 3 slots free: all admitted at once
    late = _requests(prompts[4:], 5, loop)
    for request in late:
        engine.submit(request)
    _run(engine)
    # the first request's slot waited for the three about to end: 4 came in one prefill
    assert groups == [1, 3, 4]
    alone = generate(NumpyExecutor(plan), prompts[4:], 5).tokens
    assert [r.sequence.tokens for r in late] == alone
    assert all(r.sequence.finish_reason == "length" for r in first + middle + late)
    loop.close()


def test_admission_does_not_wait_for_slots_far_from_freeing(plan):
    loop = asyncio.new_event_loop()
    engine, groups = _engine(plan)
    prompts = [[5 + i, 9, 30 + i] for i in range(5)]
    engine.submit(_requests(prompts[:1], 3, loop)[0])
    engine._turn()
    for request in _requests(prompts[1:4], 3 * MERGE_STEPS, loop):
        engine.submit(request)
    engine._turn()
    for request in _requests(prompts[4:], 2, loop):  # waits for the first one's slot only
        engine.submit(request)
    _run(engine)
    assert groups == [1, 3, 1]
    loop.close()
