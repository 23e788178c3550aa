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
