"""With the forget processor registered, requests that name no target are untouched."""

from tests.integration.conftest import BATCH, chats, greedy, token_ids
from tests.prompts import RETAIN_PROMPTS


def test_unflagged_batch_is_bit_identical_to_an_engine_without_the_processor(
    llm, reference_outputs
):
    assert len(RETAIN_PROMPTS) >= 20
    outputs = token_ids(llm.chat(chats(BATCH), greedy(), use_tqdm=False))
    assert outputs == reference_outputs
    assert all(len(ids) > 3 for ids in outputs)


def test_the_processor_returns_unflagged_rows_bit_for_bit_in_mixed_batches(llm):
    from logits_processors.params import ACTION_KEY, TARGETS_KEY
    from tests.integration.recording import RecordingProcessor

    RecordingProcessor.steps.clear()
    flagged = greedy(extra_args={TARGETS_KEY: ["hp@1"], ACTION_KEY: "restrict"})
    params = [greedy()] * (len(BATCH) - 1) + [flagged]
    llm.chat(chats(BATCH), params, use_tqdm=False)
    steps = RecordingProcessor.steps
    mixed = [s for s in steps if s.flagged and s.rows > s.flagged]
    assert len(mixed) >= 10, steps  # the engine really batched flagged and unflagged rows
    assert all(s.unflagged_identical for s in steps)
    assert any(s.flagged_changed for s in mixed)
