"""engine.identity: trait merging and the anonymous-to-known identity map."""

from __future__ import annotations

from typing import Any

import pytest

from engine.identity import IdentityMap, anonymous_key, merge_traits, user_key


@pytest.mark.parametrize(
    ("base", "update", "merged"),
    [
        ({"a": 1, "b": 2}, {"a": 3}, {"a": 3, "b": 2}),
        ({}, {"a": 1}, {"a": 1}),
        ({"a": 1}, {"a": None}, {"a": None}),
        (
            {"subscriptions": {"sms": True, "email": True}},
            {"subscriptions": {"sms": False}},
            {"subscriptions": {"sms": False, "email": True}},
        ),
        ({"x": {"y": {"z": 1, "w": 2}}}, {"x": {"y": {"z": 9}}}, {"x": {"y": {"z": 9, "w": 2}}}),
        ({"s": {"x": 1}}, {"s": 5}, {"s": 5}),
        ({"s": 5}, {"s": {"x": 1}}, {"s": {"x": 1}}),
        ({"s": {"x": 1}}, {"s": [1]}, {"s": [1]}),
    ],
)
def test_merge_traits(base: dict[str, Any], update: dict[str, Any], merged: dict[str, Any]) -> None:
    assert merge_traits(base, update) == merged


def test_merge_traits_does_not_mutate_inputs() -> None:
    base = {"s": {"x": 1}}
    update = {"s": {"y": 2}}
    merge_traits(base, update)
    assert base == {"s": {"x": 1}}
    assert update == {"s": {"y": 2}}


def test_resolve_unlinked_ids() -> None:
    ids = IdentityMap()
    assert ids.resolve("u1", None) == user_key("u1")
    assert ids.resolve(None, "a1") == anonymous_key("a1")
    # the userId wins over the anonymousId
    assert ids.resolve("u1", "a1") == user_key("u1")


def test_link_routes_the_anonymous_id_to_the_user() -> None:
    ids = IdentityMap()
    assert ids.link(anonymous_key("a1"), user_key("u1")) is True
    assert ids.resolve(None, "a1") == user_key("u1")
    assert ids.owner(anonymous_key("a1")) == user_key("u1")


def test_first_link_wins() -> None:
    ids = IdentityMap()
    ids.link(anonymous_key("a1"), user_key("u1"))
    assert ids.link(anonymous_key("a1"), user_key("u2")) is False
    assert ids.resolve(None, "a1") == user_key("u1")


def test_link_to_self_is_a_no_op() -> None:
    ids = IdentityMap()
    assert ids.link(user_key("u1"), user_key("u1")) is False
    assert ids.links == {}


def test_link_to_a_linked_target_goes_to_its_owner() -> None:
    ids = IdentityMap()
    ids.link(user_key("old"), user_key("new"))
    assert ids.link(anonymous_key("a1"), user_key("old")) is True
    assert ids.resolve(None, "a1") == user_key("new")


def test_chains_repoint_to_the_final_owner() -> None:
    ids = IdentityMap()
    ids.link(anonymous_key("a1"), user_key("u1"))
    ids.link(anonymous_key("a2"), user_key("u1"))
    assert ids.link(user_key("u1"), user_key("u2")) is True
    assert ids.links == {
        anonymous_key("a1"): user_key("u2"),
        anonymous_key("a2"): user_key("u2"),
        user_key("u1"): user_key("u2"),
    }
    assert ids.resolve(None, "a1") == user_key("u2")
    assert ids.resolve("u1", None) == user_key("u2")


def test_link_back_to_own_follower_makes_no_cycle() -> None:
    ids = IdentityMap()
    ids.link(user_key("a"), user_key("b"))
    assert ids.link(user_key("b"), user_key("a")) is False
    assert ids.resolve("a", None) == user_key("b")
    assert ids.resolve("b", None) == user_key("b")
