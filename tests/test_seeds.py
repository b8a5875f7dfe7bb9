from prefdiv.seeds import replicate_seed


def test_replicate_seed_is_seed_alone_for_train_seed_zero():
    # train_seed 0 must leave every output of a run without replicates as it was
    assert [replicate_seed(s, 0) for s in (0, 1, 7)] == [0, 1, 7]
    mixed = {(s, t): replicate_seed(s, t) for s in range(4) for t in range(1, 4)}
    assert len(set(mixed.values())) == len(mixed)  # every (seed, train_seed) its own stream
    assert set(mixed.values()).isdisjoint(range(4))  # … and none a plain seed's
    assert all(0 <= v < 2**32 for v in mixed.values())  # numpy.random.seed's range
    assert replicate_seed(1, 2) == mixed[1, 2]  # deterministic
