"""Wire formats: bytes on the link come from the encoded message; receivers train on decodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.errors import ConfigError, InnetError
from innet.core.events import step_plan
from innet.core.plans import Plan
from innet.core.records import ExchangeLog
from innet.core.transport import ANY, InProcessTransport, RecordingTransport
from innet.families.inl.config import InlScenario, resolve_variants
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.modules import ModuleSpec
from innet.families.inl.wire import (
    BACKWARD_FORMATS,
    FORWARD_FORMATS,
    make_codec,
    message_bits_per_sample,
)
from innet.families.inl.wire.index import pack_indices, unpack_indices

DIM = 4
BATCH = 5  # odd: index packing pads the last byte
N_TRAIN, N_TEST = 20, 9


def values(batch: int = BATCH, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed)) * 3.0


def generator(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- codecs ------------------------------------------------------------------------------


def test_float32_is_the_tensor_itself() -> None:
    codec = make_codec("float32", DIM)
    x = values()
    assert codec.encode(x) is not None and codec.encode(x).data_ptr() == x.data_ptr()
    assert codec.announce(BATCH) == ((BATCH, DIM), torch.float32)
    assert codec.decode(x, BATCH) is x


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_half_precision_halves_the_bytes(name: str) -> None:
    codec = make_codec(name, DIM)
    x = values()
    message = codec.encode(x)
    assert message.dtype == torch.uint8
    assert message.numel() * message.element_size() == x.numel() * x.element_size() // 2
    assert (tuple(message.shape), message.dtype) == codec.announce(BATCH)
    decoded = codec.decode(message, BATCH)
    cast = {"float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    torch.testing.assert_close(decoded, x.to(cast).float(), rtol=0, atol=0)


def test_int8_is_a_quarter_plus_the_scale_and_errs_by_less_than_the_scale() -> None:
    codec = make_codec("int8", DIM)
    x = values()
    message = codec.encode(x, generator=generator())
    assert message.dtype == torch.uint8
    assert message.numel() == x.numel() + 4  # one byte per value + one float32 scale
    assert (tuple(message.shape), message.dtype) == codec.announce(BATCH)
    scale = float(x.abs().max()) / 127
    decoded = codec.decode(message, BATCH)
    assert (decoded - x).abs().max().item() < scale * (1 + 1e-6)
    # the values on the grid: integers times the scale
    steps = decoded / scale
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-4)


def test_int8_rounding_is_stochastic_unbiased_and_reproducible() -> None:
    codec = make_codec("int8", DIM)
    x = values()
    same = [codec.encode(x, generator=generator(7)) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    mean = torch.stack(
        [codec.decode(codec.encode(x, generator=generator(s)), BATCH) for s in range(400)]
    ).mean(dim=0)
    scale = float(x.abs().max()) / 127
    assert (mean - x).abs().max().item() < 0.15 * scale  # unbiased: errors average out


def test_int8_of_zeros_decodes_to_zeros() -> None:
    codec = make_codec("int8", DIM)
    x = torch.zeros(BATCH, DIM)
    assert torch.equal(codec.decode(codec.encode(x, generator=generator()), BATCH), x)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(2, 300),
    count=st.integers(1, 70),
    seed=st.integers(0, 2**31),
)
def test_index_packing_round_trips(k: int, count: int, seed: int) -> None:
    bits = max(1, math.ceil(math.log2(k)))
    symbols = np.random.default_rng(seed).integers(0, k, size=count)
    packed = pack_indices(symbols, bits)
    assert packed.dtype == np.uint8 and len(packed) == math.ceil(count * bits / 8)
    assert unpack_indices(packed, bits, count).tolist() == symbols.tolist()


@pytest.mark.parametrize("batch", [1, 5, 64, 1024])
def test_index_with_16_codewords_sends_half_a_byte_per_sample(batch: int) -> None:
    codebook = torch.randn(16, DIM, generator=generator())
    codec = make_codec("index", DIM, codebook)
    index = torch.randint(0, 16, (batch,), generator=generator(2))
    message = codec.encode(codebook[index], index=index)
    assert message.dtype == torch.uint8
    assert message.numel() == math.ceil(batch * 4 / 8)
    assert codec.announce(batch) == ((math.ceil(batch * 4 / 8),), torch.uint8)
    torch.testing.assert_close(codec.decode(message, batch), codebook[index], rtol=0, atol=0)


def test_entropy_bytes_are_the_coders_output_and_decode_exactly() -> None:
    x = values(batch=64, dim=DIM)
    int8 = make_codec("int8", DIM)
    entropy = make_codec("entropy", DIM)
    assert entropy.announce(64) == ((ANY,), torch.uint8)
    message = entropy.encode(x, generator=generator(3))
    plain = int8.encode(x, generator=generator(3))  # the same symbols, uncoded
    coded = zstandard.ZstdCompressor(level=19, write_checksum=False).compress(
        plain[4:].numpy().tobytes()
    )
    assert message.numel() == 4 + len(coded)  # the scale, then exactly what the coder produced
    assert message[4:].numpy().tobytes() == coded
    assert zstandard.ZstdDecompressor().decompress(coded) == plain[4:].numpy().tobytes()
    torch.testing.assert_close(entropy.decode(message, 64), int8.decode(plain, 64), rtol=0, atol=0)


def test_entropy_of_codeword_indices_decodes_back_and_compresses_skewed_symbols() -> None:
    codebook = torch.randn(16, DIM, generator=generator())
    codec = make_codec("entropy", DIM, codebook)
    batch = 1024
    index = torch.zeros(batch, dtype=torch.long)  # one codeword: almost no information
    index[::97] = 3
    message = codec.encode(codebook[index], index=index)
    assert message.numel() < math.ceil(batch * 4 / 8)  # below the packed index format
    assert message.numpy().tobytes() == zstandard.ZstdCompressor(
        level=19, write_checksum=False
    ).compress(index.numpy().astype(np.uint8).tobytes())
    torch.testing.assert_close(codec.decode(message, batch), codebook[index], rtol=0, atol=0)


def test_index_needs_a_codebook_and_formats_are_known() -> None:
    with pytest.raises(InnetError, match="discrete gate"):
        make_codec("index", DIM)
    with pytest.raises(InnetError, match="unknown forward wire format"):
        make_codec("float64", DIM)
    assert set(BACKWARD_FORMATS) < set(FORWARD_FORMATS)


def test_message_bits_per_sample() -> None:
    assert message_bits_per_sample("float32", 16) == 512
    assert message_bits_per_sample("float16", 16) == message_bits_per_sample("bfloat16", 16) == 256
    assert message_bits_per_sample("int8", 16) == 128
    assert message_bits_per_sample("index", 16, 16) == 4
    assert message_bits_per_sample("index", 16, 17) == 5
    assert message_bits_per_sample("entropy", 16) == 128
    assert message_bits_per_sample("entropy", 16, 16) == 4


# --- in the executor -----------------------------------------------------------------------


class SpyTransport(InProcessTransport):
    """Keeps every message handed to it (what crossed the link)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, str, torch.Tensor]] = []

    def send(self, tensor, *, src, dst, phase, payload):  # noqa: ANN001
        self.sent.append((src, dst, phase, tensor.clone()))
        super().send(tensor, src=src, dst=dst, phase=phase, payload=payload)


PLAN = Plan("dense", "f", (("s1", "r"), ("s1", "f"), ("s2", "r"), ("r", "f")))


def make_executor(
    forward: str, backward: str = "float32", gate: str = "gaussian", header: int = 0, seed: int = 0,
    **options,
):  # fmt: skip
    """Two sensors, a relay and the fusion node; ``s1`` sends to two parents (dense-like).

    ``options`` go to the executor (``codebook_sync``, ``gate_groups``, ...).
    """
    plan = PLAN
    data = torch.Generator().manual_seed(5)
    views = {
        node: (torch.randn(N_TRAIN, 3, generator=data), torch.randn(N_TEST, 3, generator=data))
        for node in ("s1", "s2")
    }
    labels = (torch.randint(0, 3, (N_TRAIN,), generator=data), torch.randint(0, 3, (N_TEST,)))
    specs = {
        node: ModuleSpec(
            node=node,
            is_fusion=node == "f",
            view_dim=3 if node in views else None,
            n_received=len(plan.children(node)),
            latent_dim=DIM,
            hidden=6,
            aggregator="sum",
            gate_kind=gate,
            n_classes=3,
            codewords=16,
        )  # fmt: skip
        for node in plan.forward_order()
    }
    spy = SpyTransport()
    recorder = RecordingTransport(spy, ExchangeLog(["s1", "s2", "r", "f"]), header)
    executor = PerNodeExecutor(
        plan=plan, specs=specs, seed=seed, transport=recorder, views=views, labels=labels,
        lr=0.05, wire_forward=forward, wire_backward=backward, **options,
    )  # fmt: skip
    return executor, spy


def capture_inputs(executor: PerNodeExecutor) -> tuple[dict, dict]:
    """Wrap every module: what each sender sent (its gate's ``t``) and what each receiver got."""
    sent: dict[str, torch.Tensor] = {}
    got: dict[str, list[torch.Tensor]] = {}
    for node, module in executor.modules.items():
        if module.spec.is_fusion:
            original = module.decode

            def decode(received, batch=0, _original=original, _node=node):  # noqa: ANN001
                got[_node] = [r.detach().clone() for r in received]
                return _original(received, batch)

            module.decode = decode
        else:
            original = module.send_forward

            def send_forward(view, received, _original=original, _node=node):  # noqa: ANN001
                got[_node] = [r.detach().clone() for r in received]
                out = _original(view, received)
                sent[_node] = out.t.detach().clone()
                return out

            module.send_forward = send_forward
    return sent, got


def step(executor: PerNodeExecutor, number: int, batch: int = BATCH) -> float | None:
    log = executor.transport.log
    index = np.arange(number * batch, (number + 1) * batch) % N_TRAIN
    log.begin("train", 0, number, len(index))
    loss = executor.train_step(index, step_plan(executor.plan, frozenset(), []))
    log.end()
    return loss


def forward_bytes(executor: PerNodeExecutor) -> set[int]:
    rows = executor.transport.log.frame("v", 0)
    return set(rows.nbytes[rows.phase == "forward"])


def backward_bytes(executor: PerNodeExecutor) -> set[int]:
    rows = executor.transport.log.frame("v", 0)
    return set(rows.nbytes[rows.phase == "backward"])


@pytest.mark.parametrize(
    ("forward", "backward", "fwd_bytes", "bwd_bytes"),
    [
        ("float32", "float32", BATCH * DIM * 4, BATCH * DIM * 4),
        ("float16", "float16", BATCH * DIM * 2, BATCH * DIM * 2),
        ("bfloat16", "float32", BATCH * DIM * 2, BATCH * DIM * 4),
        ("int8", "int8", BATCH * DIM + 4, BATCH * DIM + 4),
    ],
)
def test_recorded_bytes_are_those_of_the_format(forward, backward, fwd_bytes, bwd_bytes) -> None:  # noqa: ANN001
    executor, _ = make_executor(forward, backward, header=40)
    step(executor, 0)
    assert forward_bytes(executor) == {fwd_bytes + 40}
    assert backward_bytes(executor) == {bwd_bytes + 40}


def test_index_format_sends_ceil_batch_times_4_over_8_bytes_with_16_codewords() -> None:
    executor, spy = make_executor("index", gate="discrete", header=40)
    step(executor, 0)
    assert forward_bytes(executor) == {math.ceil(BATCH * 4 / 8) + 40}  # 3 bytes for 5 samples
    assert backward_bytes(executor) == {BATCH * DIM * 4 + 40}  # gradients of the codewords
    assert all(t.dtype == torch.uint8 for _, _, phase, t in spy.sent if phase == "forward")


@pytest.mark.parametrize(
    ("forward", "backward", "gate"),
    [
        ("float16", "float16", "gaussian"),
        ("bfloat16", "bfloat16", "none"),
        ("int8", "int8", "gaussian"),
        ("index", "float16", "discrete"),
        ("entropy", "int8", "gaussian"),
        ("entropy", "float32", "discrete"),
    ],
)
def test_short_training_runs_and_receivers_get_the_decoded_values(forward, backward, gate) -> None:  # noqa: ANN001
    executor, spy = make_executor(forward, backward, gate=gate)
    sent, got = capture_inputs(executor)
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in executor.modules.items()}
    for number in range(3):
        spy.sent.clear()
        loss = step(executor, number)
        assert loss is not None and math.isfinite(loss)
        assert executor.transport.inner.pending() == 0
        messages = {(src, dst): t for src, dst, phase, t in spy.sent if phase == "forward"}
        for (src, dst), message in messages.items():
            if forward != "float32":
                assert message.dtype == torch.uint8  # the encoded bytes crossed the link
            codec = executor._codec(src, dst, "latent")
            decoded = codec.decode(message, BATCH, executor._copies.get((src, dst)))
            # the receiver got exactly the decode of what crossed the link
            assert any(torch.equal(decoded, r) for r in got[dst]), (src, dst)
            error = (decoded - sent[src]).abs().max().item()
            if forward in ("index",) or (forward == "entropy" and gate == "discrete"):
                assert error == 0.0  # the codeword itself, looked up by the receiver
            elif forward in ("int8", "entropy"):
                assert error <= sent[src].abs().max().item() / 127 * (1 + 1e-5)
            else:
                assert error <= sent[src].abs().max().item() * 2**-7
        # entropy: sizes come from the coder, so they vary (announced as ANY)
        rows = executor.transport.log.frame("v", 0)
        assert (rows.nbytes > 0).all()
    after = {n: list(m.parameters()) for n, m in executor.modules.items()}
    assert any(
        not torch.equal(a, b)
        for node in before
        for a, b in zip(before[node], after[node], strict=True)
    )
    # the evaluation sends the same format
    log = executor.transport.log
    log.begin("eval", 0, 0, N_TEST)
    result = executor.evaluate_batch(np.arange(N_TEST))
    log.end()
    assert result.samples == N_TEST and set(result.rate_stats) == {"s1", "s2", "r"}


def test_int8_messages_are_reproducible_and_depend_on_the_step() -> None:
    runs = []
    for _ in range(2):
        executor, spy = make_executor("int8", "int8")
        step(executor, 0)
        step(executor, 0)  # the same batch again: other rounding noise
        runs.append([t for _, _, _, t in spy.sent])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    half = len(runs[0]) // 2
    first, second = runs[0][:half], runs[0][half:]
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_sender_to_two_parents_encodes_its_latent_once() -> None:
    executor, spy = make_executor("int8")
    step(executor, 0)
    to_parents = [t for src, _, phase, t in spy.sent if src == "s1" and phase == "forward"]
    assert len(to_parents) == 2 and torch.equal(to_parents[0], to_parents[1])


CODEBOOK_BYTES = 4 * 2 * 16 * (DIM // 2)  # float32 [groups, K, dim / groups]


@pytest.mark.parametrize("forward", ["index", "entropy"])
def test_codebooks_are_charged_once_per_parent_on_sync_steps_only(forward: str) -> None:
    executor, spy = make_executor(
        forward, "int8", gate="discrete", header=40, codebook_sync=3, gate_groups=2
    )
    for number in range(7):
        step(executor, number)
    rows = executor.transport.log.frame("v", 0)
    books = rows[rows.phase == "codebook"]
    assert set(books.nbytes) == {CODEBOOK_BYTES + 40} and set(books.payload) == {"codebook"}
    for number in range(7):  # the first step (data initialisation), then every third
        at = books[books.step == number]
        expected = sorted(PLAN.edges) if number % 3 == 0 else []
        assert sorted(zip(at.src, at.dst, strict=True)) == expected, number
    assert int(books.nbytes.sum()) == 3 * len(PLAN.edges) * (CODEBOOK_BYTES + 40)
    # training traffic: in the training exchange, with the latents and gradients
    assert executor.transport.log.train_bytes_per_epoch() == {0: int(rows.nbytes.sum())}
    crossed = [t for _, _, phase, t in spy.sent if phase == "codebook"]
    assert all(t.dtype == torch.float32 and t.shape == (2, 16, DIM // 2) for t in crossed)
    # a sender's codebook goes before its latents
    first = rows[rows.step == 0].reset_index(drop=True)
    for src, dst in PLAN.edges:
        link = first[(first.src == src) & (first.dst == dst)]
        assert link.phase.tolist()[:2] == ["codebook", "forward"]


def decodes_what_was_sent(executor: PerNodeExecutor, sent: dict, got: dict) -> None:
    """Every receiver got exactly the codeword its children's gates sent."""
    for src, dst in executor.plan.edges:
        assert any(torch.equal(sent[src], r) for r in got[dst]), (src, dst)
        gate = executor.modules[src].gate
        torch.testing.assert_close(executor._copies[(src, dst)], gate.published, rtol=0, atol=0)


def test_receivers_decode_the_sent_codewords_across_syncs_and_plan_changes() -> None:
    executor, _ = make_executor("index", "int8", gate="discrete", codebook_sync=3, gate_groups=2)
    sent, got = capture_inputs(executor)
    gate = executor.modules["s2"].gate
    for number in range(7):
        step(executor, number)
        decodes_what_was_sent(executor, sent, got)
        if number % 3:  # between syncs the running means move the working codebook only
            assert not torch.equal(gate.codebook, gate.published)
    log = executor.transport.log

    def books_at(kind: str, number: int) -> list[tuple[str, str]]:
        rows = log.frame("v", 0)
        steps = np.repeat([s[0] for s in log.steps], log.step_sizes())
        at = rows[(steps == kind) & (rows.step == number) & (rows.payload == "codebook")]
        return sorted(zip(at.src, at.dst, strict=True))

    # a plan change on a step that is no sync step: s2's new parent f gets its codebook first
    moved = Plan("dense", "f", (("s1", "r"), ("s1", "f"), ("s2", "f"), ("r", "f")))
    executor.set_plan(moved)
    step(executor, 7)
    assert books_at("train", 7) == [("s2", "f")]
    decodes_what_was_sent(executor, sent, got)
    step(executor, 8)
    assert books_at("train", 8) == []
    step(executor, 9)  # a sync step: r, no longer s2's parent, keeps an old copy
    assert not torch.equal(executor._copies[("s2", "r")], gate.published)
    # evaluation on the first plan again, before any training step on it: r gets the
    # current codebook as evaluation traffic, and decodes what s2 sends
    executor.set_plan(PLAN)
    log.begin("eval", 0, 0, N_TEST)
    executor.evaluate_batch(np.arange(N_TEST))
    log.end()
    assert books_at("eval", 0) == [("s2", "r")]
    rows = log.frame("v", 0)
    assert set(rows[rows.payload == "codebook"].phase) == {"codebook", "eval"}
    decodes_what_was_sent(executor, sent, got)
    step(executor, 10)
    assert books_at("train", 10) == []
    decodes_what_was_sent(executor, sent, got)


def test_float_messages_send_no_codebook_and_train_it_locally() -> None:
    executor, _ = make_executor("int8", "int8", gate="discrete", codebook_sync=1)
    gate = executor.modules["s1"].gate
    assert gate.published is None
    start = gate.codebook.clone()
    for number in range(2):
        step(executor, number)
    rows = executor.transport.log.frame("v", 0)
    assert set(rows.phase) == {"forward", "backward"}
    assert not torch.equal(gate.codebook, start)  # data initialisation, running means


def test_a_fixed_codebook_is_sent_once_and_latents_commit_to_it() -> None:
    executor, _ = make_executor("index", "int8", gate="discrete", codebook_sync=2,
                                train_codebook=False)  # fmt: skip
    sent, got = capture_inputs(executor)
    gate = executor.modules["s1"].gate
    start = gate.codebook.clone()
    encoder = executor.modules["s1"].encoder[0].weight.detach().clone()
    for number in range(4):
        step(executor, number)
        decodes_what_was_sent(executor, sent, got)
    rows = executor.transport.log.frame("v", 0)
    books = rows[rows.phase == "codebook"]
    assert set(books.step) == {0} and len(books) == len(PLAN.edges)  # no re-publication
    assert torch.equal(gate.codebook, start) and torch.equal(gate.published, start)
    # the choice still learns: the latent gets the gradient of the codeword it sent
    assert not torch.equal(executor.modules["s1"].encoder[0].weight, encoder)


def test_codebook_choice_is_trained_or_fixed() -> None:
    resolved = resolve_variants(scenario(variants={"a": {"routing": "dense"}}))
    assert resolved[0].gate.codebook == "trained"
    with pytest.raises(ValueError, match="codebook"):
        scenario(variants={"a": {"routing": "dense"}}, gate={"codebook": "frozen"})


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_codebook_sync_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="codebook_sync"):
        make_executor("index", gate="discrete", codebook_sync=bad)
    with pytest.raises(ValueError, match="codebook_sync"):
        scenario(variants={"a": {"routing": "dense"}}, gate={"codebook_sync": bad})
    assert scenario(variants={"a": {"routing": "dense"}}).gate.codebook_sync == 2


# --- configuration -------------------------------------------------------------------------


def scenario(**blocks) -> InlScenario:  # noqa: ANN003
    return InlScenario(name="t", family="inl", topology="x.yaml", **blocks)


def test_wire_block_defaults_to_float32_and_variants_override_it() -> None:
    variants = {
        "plain": {"routing": "dijkstra"},
        "half": {"routing": "dijkstra", "wire": {"forward": "float16"}},
        "codes": {
            "routing": "dijkstra",
            "gate": {"kind": "discrete"},
            "wire": {"forward": "index"},
        },
    }
    resolved = {v.name: v for v in resolve_variants(scenario(variants=variants))}
    assert resolved["plain"].wire.forward == resolved["plain"].wire.backward == "float32"
    assert resolved["half"].wire.forward == "float16"
    assert resolved["half"].wire.backward == "float32"
    # the capacity-aware tree weighs links by the message actually sent
    assert resolved["plain"].forward_message_bits() == 64 * 16 * 32
    assert resolved["half"].forward_message_bits(header_bytes=10) == 8 * (64 * 16 * 2 + 10)
    assert resolved["codes"].forward_message_bits() == 64 * 4


def test_unknown_format_and_index_without_a_discrete_gate_are_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown forward wire format"):
        scenario(variants={"a": {"routing": "dense"}}, wire={"forward": "float8"})
    with pytest.raises(ValueError, match="unknown backward wire format"):
        scenario(variants={"a": {"routing": "dense"}}, wire={"backward": "index"})
    bad = scenario(variants={"a": {"routing": "dense", "wire": {"forward": "index"}}})
    with pytest.raises(ConfigError, match="needs gate kind 'discrete'") as error:
        resolve_variants(bad)
    assert error.value.field == "variants.a.wire"


def test_entropy_of_more_than_256_codeword_indices_round_trips() -> None:
    codebook = torch.randn(300, DIM, generator=generator())
    codec = make_codec("entropy", DIM, codebook)
    index = torch.randint(0, 300, (50,), generator=generator(4))
    message = codec.encode(codebook[index], index=index)
    torch.testing.assert_close(codec.decode(message, 50), codebook[index], rtol=0, atol=0)
