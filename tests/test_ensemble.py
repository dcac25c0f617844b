"""fastnet.Ensemble: the chapter's plurality vote (ties to the lowest class),
probability averaging, accuracy as net.accuracy, save/load without pickle.

The members are real Networks with hand-set weights: one softmax layer whose
weights are a scaled permutation, so member k predicts perm_k[argmax(x)] and
every vote below is known in advance.
"""

import json
import os

import numpy as np
import pytest

import fastnet
from fastnet import Ensemble, Network, SoftmaxLayer
from fastnet.ensemble import plurality

N_CLASSES = 4


def member(permutation, scale=10.0, bias=None, mbs=2):
    """A net mapping one-hot class c to class permutation[c]."""
    net = Network([SoftmaxLayer(n_in=N_CLASSES, n_out=N_CLASSES)], mbs, engine="cpu")
    w = np.zeros((N_CLASSES, N_CLASSES), dtype=net.dtype)
    for c, target in enumerate(permutation):
        w[c, target] = scale
    net.params[0].set_value(w)
    net.params[1].set_value(np.zeros(N_CLASSES, net.dtype) if bias is None
                            else np.asarray(bias, net.dtype))
    return net


X = np.eye(N_CLASSES, dtype=np.float32)       # row c: "class c"
IDENTITY = [0, 1, 2, 3]


def test_plurality_majority_and_ties_to_the_lowest_class():
    # members x rows
    votes = np.array([[2, 0, 3, 1, 3],
                      [2, 1, 1, 3, 0],
                      [1, 2, 1, 0, 2]])
    # row 0: 2 wins 2-1; row 1: 0/1/2 tie -> 0; row 2: 1 wins; row 3: 1/3/0 -> 0;
    # row 4: 3/0/2 tie -> 0
    assert plurality(votes, 4).tolist() == [2, 0, 1, 0, 0]
    # two members disagreeing: the lower class, whichever member said it
    assert plurality(np.array([[3, 1], [1, 3]]), 4).tolist() == [1, 1]


def test_ensemble_votes_of_real_networks():
    shift = [1, 2, 3, 0]
    ens = Ensemble([member(IDENTITY), member(IDENTITY), member(shift)])
    assert ens.member_predictions(X).tolist() == [IDENTITY, IDENTITY, shift]
    assert ens.predict(X).tolist() == IDENTITY            # 2 votes against 1
    # one each: a tie on every row, won by the lower of the two classes
    tie = Ensemble([member(shift), member(IDENTITY)])
    assert tie.predict(X).tolist() == [0, 1, 2, 0]
    assert Ensemble([member(IDENTITY), member(shift)]).predict(X).tolist() == [0, 1, 2, 0]


def test_average_vote_can_differ_from_plurality():
    # two members sure of class 0 by a hair; one member very sure of class 1:
    # plurality says 0, averaged probabilities say 1
    hair = member(IDENTITY, scale=0.0, bias=[0.1, 0.0, 0.0, 0.0])
    sure = member(IDENTITY, scale=0.0, bias=[0.0, 20.0, 0.0, 0.0])
    ens = Ensemble([hair, hair, sure])
    x = X[:2]
    assert ens.predict(x).tolist() == [0, 0]
    assert ens.predict(x, vote="average").tolist() == [1, 1]
    assert Ensemble([hair, hair, sure], vote="average").predict(x).tolist() == [1, 1]
    probs = ens.output(x)
    assert probs.shape == (2, N_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    expected = np.mean([hair.output(x), hair.output(x), sure.output(x)], axis=0)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)


def test_accuracy_is_a_fraction_like_net_accuracy():
    shift = [1, 2, 3, 0]
    ens = Ensemble([member(IDENTITY, mbs=4), member(shift, mbs=4), member(shift, mbs=4)])
    # 9 rows: the 9th is a partial mini-batch of 4 and is left out, as
    # net.accuracy does (counted, it would make 3 of 9); the ensemble
    # predicts `shift`, right on 2 of 8
    x = np.concatenate([X, X, X[:1]])
    y = np.array([1, 0, 0, 1, 0, 2, 0, 3, 1])
    acc = ens.accuracy((x, y))
    assert acc == pytest.approx(2 / 8)
    assert ens.nets[1].accuracy((x, y)) == pytest.approx(acc)
    assert ens.accuracy((x, y), vote="average") == pytest.approx(2 / 8)


def test_bad_ensembles_are_clear_errors():
    with pytest.raises(ValueError, match="no networks"):
        Ensemble([])
    with pytest.raises(ValueError, match="member 1 is 'net'"):
        Ensemble([member(IDENTITY), "net"])
    with pytest.raises(ValueError, match="vote must be one of"):
        Ensemble([member(IDENTITY)], vote="majority")
    other = Network([SoftmaxLayer(n_in=5, n_out=N_CLASSES)], 2, engine="cpu")
    with pytest.raises(ValueError, match="member 1 takes 5 inputs"):
        Ensemble([member(IDENTITY), other])
    with pytest.raises(ValueError, match="vote must be one of"):
        Ensemble([member(IDENTITY)]).predict(X, vote="max")


def test_save_and_load_round_trip(tmp_path):
    shift = [1, 2, 3, 0]
    ens = Ensemble([member(IDENTITY), member(shift), member(shift)], vote="average")
    ens.save(tmp_path / "ens")
    manifest = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert manifest["members"] == ["member-00.npz", "member-01.npz", "member-02.npz"]
    back = Ensemble.load(tmp_path / "ens")
    assert back.vote == "average" and len(back) == 3
    np.testing.assert_array_equal(back.output(X), ens.output(X))
    assert back.predict(X).tolist() == ens.predict(X).tolist()


@pytest.mark.parametrize("manifest, message", [
    ("{", "not a JSON manifest"),
    ('{"format": "other", "version": 1, "members": ["a.npz"]}', "not a fastnet ensemble"),
    ('{"format": "fastnet-ensemble", "version": 9, "members": ["a.npz"]}', "version 9"),
    ('{"format": "fastnet-ensemble", "version": 1, "members": []}', "non-empty list"),
    ('{"format": "fastnet-ensemble", "version": 1, "members": ["../x.npz"]}',
     "not a .npz file name in the ensemble's directory"),
    ('{"format": "fastnet-ensemble", "version": 1, "members": ["/etc/passwd"]}',
     "not a .npz file name"),
    ('{"format": "fastnet-ensemble", "version": 1, "members": ["m.npz"], '
     '"vote": "loudest"}', "vote must be one of"),
])
def test_bad_manifests_are_refused(tmp_path, manifest, message):
    member(IDENTITY).save(tmp_path / "m.npz")
    (tmp_path / "ensemble.json").write_text(manifest)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        Ensemble.load(tmp_path)


def test_a_pickle_member_is_refused(tmp_path):
    import pickle
    (tmp_path / "m.npz").write_bytes(pickle.dumps({"w": 1}))
    (tmp_path / "ensemble.json").write_text(
        '{"format": "fastnet-ensemble", "version": 1, "members": ["m.npz"]}')
    with pytest.raises(pickle.UnpicklingError):
        Ensemble.load(tmp_path)
    assert os.path.exists(tmp_path / "m.npz")


def test_members_trained_with_different_seeds_vote():
    from fastnet import datasets
    tr, va, te = datasets.mnist_sample()
    tr, va, te = [(x[:500], y[:500]) for x, y in (tr, va, te)]
    nets = []
    for seed in (0, 1, 2):
        np.random.seed(seed)
        net = Network([fastnet.FullyConnectedLayer(n_in=784, n_out=20),
                       SoftmaxLayer(n_in=20, n_out=10)], 10, engine="cpu")
        net.SGD(tr, 1, 10, 0.5, va, te)
        nets.append(net)
    assert not np.array_equal(nets[0].params[0].get_value(), nets[1].params[0].get_value())
    ens = Ensemble(nets)
    acc = ens.accuracy(te)
    expected = np.mean(plurality(np.stack([n.predict(te[0]) for n in nets]), 10) == te[1])
    assert acc == pytest.approx(expected)
    assert 0.5 < acc <= 1.0
