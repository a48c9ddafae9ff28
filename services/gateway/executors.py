"""HTTP route for the fleet: the executors and what they last reported."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from scriptbus.gateway import fleet
from scriptbus.gateway.auth import Role, need
from scriptbus.gateway.openapi import UNAUTHORIZED, UNAVAILABLE
from scriptbus.gateway.schemas import ExecutorList
from scriptbus.gateway.state import Gateway, get_gateway

router = APIRouter(prefix="/api/v1/executors", tags=["executors"], dependencies=[Depends(need(Role.read))])


@router.get("", response_model=ExecutorList, summary="List executors", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_executors(gw: Annotated[Gateway, Depends(get_gateway)]) -> ExecutorList:
    """Every executor host by name: its pools, labels, capacity, runs at its last heartbeat, and state
    (`online`, `draining`, `stopped`, or `lost` once silent for SCRIPTBUS_EXECUTOR_LOST_AFTER_S)."""
    return ExecutorList(items=await fleet.list_executors(gw))
