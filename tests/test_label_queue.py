"""LabelQueue: vote, tie-breaks, partial fill, drop-oldest, masking, agreement, checkpoints."""
import pytest
import torch

from ssrl_lab.labels.queue import LabelQueue, mode_of_rows


def _q(seed, **kw):
    seed = torch.tensor(seed)
    return LabelQueue(len(seed), seed_labels=seed, **kw)


def test_seeded_queue_votes_seed():
    q = _q([3, 1, 4], length=5, seed_copies=2)
    assert q.filled == 2
    assert q.vote().tolist() == [3, 1, 4]
    assert q.agreement().tolist() == [1.0, 1.0, 1.0]
    assert q.vote().dtype == torch.int64


def test_partially_filled_majority_and_recent_tie_break():
    q = _q([0, 0, 0])
    q.push(torch.tensor([1, 0, 2]))  # [0,0,1] [0,0,0] [0,0,2]
    assert q.vote().tolist() == [0, 0, 0]
    assert q.agreement().tolist() == pytest.approx([2 / 3, 1.0, 2 / 3])
    q.push(torch.tensor([1, 5, 3]))  # [0,0,1,1] tie -> 1 (recent); [0,0,0,5] -> 0; [0,0,2,3] -> 0
    assert q.vote().tolist() == [1, 0, 0]
    assert q.agreement().tolist() == pytest.approx([0.5, 0.75, 0.5])


def test_smallest_tie_break():
    q = _q([7, 2], tie_break="smallest")
    q.push(torch.tensor([3, 9]))
    q.push(torch.tensor([3, 9]))  # [7,7,3,3] -> 3 ; [2,2,9,9] -> 2
    assert q.vote().tolist() == [3, 2]
    q2 = _q([7, 2], tie_break="recent")
    q2.push(torch.tensor([3, 9]))
    q2.push(torch.tensor([3, 9]))
    assert q2.vote().tolist() == [3, 9]


def test_recent_tie_break_uses_latest_occurrence():
    # row [a, b, a, b, c]: a and b tie with 2; b occurs last -> b; all distinct -> newest
    rows = torch.tensor([[1, 2, 1, 2, 3], [5, 6, 7, 8, 9], [4, 4, 9, 9, 4]])
    mode, count = mode_of_rows(rows, "recent")
    assert mode.tolist() == [2, 9, 4]
    assert count.tolist() == [2, 1, 3]
    mode_s, _ = mode_of_rows(rows, "smallest")
    assert mode_s.tolist() == [1, 5, 4]


def test_push_drops_oldest_when_full():
    q = _q([0], length=3, seed_copies=2)
    q.push(torch.tensor([1]))
    assert q.entries.tolist() == [[0, 0, 1]]
    q.push(torch.tensor([2]))
    assert q.entries.tolist() == [[0, 1, 2]] and q.filled == 3
    q.push(torch.tensor([2]))
    assert q.entries.tolist() == [[1, 2, 2]]
    assert q.vote().tolist() == [2]
    assert q.n_pushes == 3


def test_length_one_is_latest_label():
    q = _q([4, 5], length=1, seed_copies=1)
    assert q.vote().tolist() == [4, 5]
    q.push(torch.tensor([1, 2]))
    assert q.vote().tolist() == [1, 2]
    q.push(torch.tensor([3, 2]))
    assert q.vote().tolist() == [3, 2] and q.agreement().tolist() == [1.0, 1.0]


def test_vote_with_active_mask_skips_masked_clusters():
    q = _q([1, 0], length=5)
    q.push(torch.tensor([1, 2]))
    q.push(torch.tensor([2, 2]))
    q.push(torch.tensor([3, 0]))  # row0 [1,1,1,2,3] row1 [0,0,2,2,0]
    assert q.vote().tolist() == [1, 0]
    active = torch.tensor([True, False, True, True])
    v, agr = q.vote_and_agreement(active)
    assert v.tolist() == [3, 0]  # row0: 1 masked, 2 and 3 tie at 1, 3 newest; row1 unaffected
    assert agr.tolist() == pytest.approx([0.2, 0.6])
    v_s = q.vote(torch.tensor([False, True, True, True]))
    assert v_s.tolist() == [1, 2]  # row1: cluster 0 masked -> 2
    # a row with no active entry falls back to its newest entry
    v2 = q.vote(torch.tensor([True, True, False, False]))
    assert v2.tolist() == [1, 0]


def test_state_dict_round_trip():
    q = _q([0, 1, 2], length=4, seed_copies=1)
    for lab in ([1, 1, 1], [2, 1, 0], [2, 2, 0]):
        q.push(torch.tensor(lab))
    st = q.state_dict()
    q2 = _q([9, 9, 9], length=4, seed_copies=1)
    q2.load_state_dict(st)
    assert q2.filled == q.filled == 4 and q2.n_pushes == 3
    assert torch.equal(q2.entries, q.entries)
    assert torch.equal(q2.vote(), q.vote())
    q.push(torch.tensor([0, 0, 0]))
    q2.push(torch.tensor([0, 0, 0]))
    assert torch.equal(q2.entries, q.entries)
    with pytest.raises(ValueError, match="shape"):
        _q([0, 1], length=4).load_state_dict(st)


def test_validation():
    with pytest.raises(ValueError, match="length"):
        _q([0], length=0)
    with pytest.raises(ValueError, match="seed_copies"):
        _q([0], length=3, seed_copies=4)
    with pytest.raises(ValueError, match="seed_copies"):
        _q([0], length=3, seed_copies=0)
    with pytest.raises(ValueError, match=">= 0"):
        _q([0, -1])
    with pytest.raises(ValueError, match="out of range"):
        _q([0, 5], n_labels=5)
    q = _q([0, 1], n_labels=3)
    with pytest.raises(ValueError, match="shape"):
        q.push(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integers"):
        q.push(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="tie_break"):
        _q([0], tie_break="newest")


def _reference_mode(r, valid, tie_break):
    counted = [x for x, v in zip(r, valid) if v]
    if not counted:
        return r[-1]
    best = max(counted.count(x) for x in counted)
    tied = {x for x in counted if counted.count(x) == best}
    if tie_break == "smallest":
        return min(tied)
    if tie_break == "oldest":
        return r[min(i for i, x in enumerate(r) if x in tied and valid[i])]
    return r[max(i for i, x in enumerate(r) if x in tied and valid[i])]


@pytest.mark.parametrize("tie_break", ["recent", "oldest", "smallest"])
@pytest.mark.parametrize("masked", [False, True])
def test_vote_matches_reference_on_random_rows(tie_break, masked):
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 4, (400, 5), generator=g, dtype=torch.int32)
    rows[0] = 1  # all entries masked when cluster 1 is inactive
    active = torch.tensor([True, False, True, True]) if masked else torch.ones(4, dtype=torch.bool)
    valid = active[rows.long()]
    mode, count = mode_of_rows(rows, tie_break, valid if masked else None)
    for r, v, m, c in zip(rows.tolist(), valid.tolist(), mode.tolist(), count.tolist()):
        assert m == _reference_mode(r, v, tie_break)
        assert c == r.count(m)


def test_oldest_tie_break_is_statistics_mode():
    import statistics

    g = torch.Generator().manual_seed(1)
    rows = torch.randint(0, 3, (300, 4), generator=g, dtype=torch.int32)
    mode, _ = mode_of_rows(rows, "oldest")
    assert mode.tolist() == [statistics.mode(r) for r in rows.tolist()]
    q = LabelQueue(2, length=5, seed_labels=torch.tensor([7, 1]), seed_copies=2, tie_break="oldest")
    q.push(torch.tensor([3, 1]))
    q.push(torch.tensor([3, 2]))
    assert q.vote().tolist() == [7, 1]  # [7, 7, 3, 3] -> 7 (first seen), [1, 1, 1, 2] -> 1


def test_vote_with_appends_without_changing_the_queue():
    import statistics

    q = LabelQueue(3, length=3, seed_labels=torch.tensor([0, 1, 2]), seed_copies=1, tie_break="oldest")
    q.push(torch.tensor([4, 1, 3]))
    before = q.entries.clone()
    got = q.vote_with(torch.tensor([2, 0]), torch.tensor([3, 4]))
    assert got.tolist() == [statistics.mode([2, 3, 3]), statistics.mode([0, 4, 4])] == [3, 4]
    assert q.vote_with(torch.tensor([1]), torch.tensor([5])).tolist() == [1]
    # a masked cluster is not counted: row 0 holds [0, 4] + [4] -> 4 even when 0 is inactive
    active = torch.tensor([False, True, True, True, True, True])
    assert q.vote_with(torch.tensor([0]), torch.tensor([0 + 4]), active).tolist() == [4]
    assert torch.equal(q.entries, before)


def test_vote_with_uses_the_newest_queue_len_entries_like_the_authors():
    import statistics

    # a full queue of 5: the authors vote over (queue + [self])[-5:], dropping the oldest entry
    q = LabelQueue(1, length=5, seed_labels=torch.tensor([7]), seed_copies=2, tie_break="oldest")
    for lab in (3, 3, 9):
        q.push(torch.tensor([lab]))
    queue = [7, 7, 3, 3, 9]
    assert q.vote().tolist() == [statistics.mode(queue)] == [7]
    got = q.vote_with(torch.tensor([0]), torch.tensor([9]))
    assert got.tolist() == [statistics.mode((queue + [9])[-5:])] == [3]  # [7, 3, 3, 9, 9] -> 3
    # over all six entries it would have been 7 ([7, 7, 3, 3, 9, 9], oldest of the tied modes)
    assert q.vote_with(torch.tensor([0]), torch.tensor([9]), window=6).tolist() == [7]
    # a queue not yet full keeps all its entries
    q2 = LabelQueue(1, length=5, seed_labels=torch.tensor([1]), seed_copies=2, tie_break="oldest")
    assert q2.vote_with(torch.tensor([0]), torch.tensor([4])).tolist() == [statistics.mode([1, 1, 4])]
    with pytest.raises(ValueError, match="window"):
        q2.vote_with(torch.tensor([0]), torch.tensor([4]), window=0)
