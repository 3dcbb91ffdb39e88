"""HTTP routes for metanetworks: what can be asked, on which networks, how well."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ServicesDep
from app.metanetworks.schemas import MetanetworkDetail, MetanetworkOut
from app.metanetworks.service import list_cards, require_card
from app.problems import PROBLEM

router = APIRouter(prefix="/v1/metanetworks", tags=["metanetworks"])


@router.get("", response_model=list[MetanetworkOut])
def list_metanetworks(services: ServicesDep) -> list[MetanetworkOut]:
    return [
        MetanetworkOut.model_validate(card, from_attributes=True)
        for card in list_cards(services.settings.metanetwork_dir)
    ]


@router.get(
    "/{name}",
    response_model=MetanetworkDetail,
    responses={404: PROBLEM},
)
def get_metanetwork(name: str, services: ServicesDep) -> MetanetworkDetail:
    card = require_card(services.settings.metanetwork_dir, name)
    return MetanetworkDetail.model_validate(card, from_attributes=True)
