"""What a backend is told about one agent: its `AgentSpec`, from the registry and settings."""

from __future__ import annotations

from hive_core.containers.backend import AgentSpec
from hive_core.registry import AgentRecord
from hive_core.services import Services


def spec_for(s: Services, record: AgentRecord) -> AgentSpec:
    settings = s.settings
    socket = (
        settings.manager_socket if record.role == "manager" else settings.agent_socket(record.name)
    )
    return AgentSpec(
        name=record.name,
        role=record.role,
        agent_dir=settings.agents_dir / record.name,
        socket=socket,
        harness_socket=settings.harness_socket(record.name),
        web_port=record.web_port,
        operator_pronouns=settings.operator_pronouns,
        dashboard_url=s.dashboard_url,
        web_host=settings.dashboard_host,
        web_allowed_hosts=settings.dashboard_allowed_hosts,
    )
