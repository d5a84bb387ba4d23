"""Event verbs: topics and subscriptions (proactive services)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dargah.cli.context import home_option, load_instance, reports_errors
from dargah.registry import topics


def _print(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


@click.group()
def topic() -> None:
    """Event topics (life events a provider publishes)."""


@topic.command("add")
@click.argument("topic_id")
@click.option("--title", default=None)
@home_option
@reports_errors
def topic_add(topic_id: str, title: str | None, home: Path | None) -> None:
    """Register a topic (TOPIC_ID = the owner subsystem's id / event type, e.g. birth-registered.v1)."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(topics.add_topic(conn, topic_id, inst.actor, title))


@topic.command("list")
@home_option
@reports_errors
def topic_list(home: Path | None) -> None:
    """List topics."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        _print(topics.list_topics(conn))


@click.group()
def subscription() -> None:
    """Subscriptions to topics: webhook delivery or pull."""


@subscription.command("add")
@click.argument("client_id")
@click.argument("topic_id")
@click.option("--webhook", default=None, help="Deliver each event by POST to this URL.")
@click.option("--pull", is_flag=True, help="The subscriber pulls events itself.")
@home_option
@reports_errors
def subscription_add(
    client_id: str, topic_id: str, webhook: str | None, pull: bool, home: Path | None
) -> None:
    """Subscribe a client to a topic (it needs a grant on the topic); prints the subscription's id."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        row = topics.add_subscription(
            conn,
            client_id,
            topic_id,
            inst.actor,
            webhook=webhook,
            pull=pull,
            settings=inst.settings,
        )
    click.echo(row["id"])


@subscription.command("list")
@click.option("--client", default=None)
@click.option("--topic", "topic_id", default=None)
@home_option
@reports_errors
def subscription_list(client: str | None, topic_id: str | None, home: Path | None) -> None:
    """List subscriptions with their deliveries by status."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        rows = topics.list_subscriptions(conn, client, topic_id)
        for row in rows:
            row["deliveries"] = topics.delivery_counts(conn, row["id"])
    _print(rows)


@subscription.command("redeliver")
@click.argument("subscription_id")
@home_option
@reports_errors
def subscription_redeliver(subscription_id: str, home: Path | None) -> None:
    """Put a subscription's dead-lettered deliveries back in the queue."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        n = topics.redeliver(conn, subscription_id, inst.actor)
    click.echo(f"{n} deliveries queued again")


commands: list[click.Command] = [topic, subscription]
