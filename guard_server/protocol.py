"""Wire models of the admin API (pydantic at the wire; limits name the field on violation)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_NAME = 200
MAX_PHRASE = 200
MAX_LIST = 100
MAX_DOCUMENTS = 200
MAX_DOCUMENT_CHARS = 20_000
MAX_EXAMPLE_CHARS = 2_000

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME)]
Phrase = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PHRASE)
]
Document = Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCUMENT_CHARS)]
Example = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXAMPLE_CHARS)]
Mode = Literal["guard", "adapter", "both"]
Policy = Literal["refuse", "restrict"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TargetCreate(_Strict):
    name: Name
    aliases: list[Phrase] = Field(default_factory=list, max_length=MAX_LIST)
    documents: list[Document] = Field(default_factory=list, max_length=MAX_DOCUMENTS)
    examples: list[Example] = Field(default_factory=list, max_length=MAX_DOCUMENTS)
    keywords: list[Phrase] = Field(default_factory=list, max_length=MAX_LIST)
    mode: Mode = "guard"
    policy: Policy = "refuse"


class TargetPatch(_Strict):
    name: Name | None = None
    aliases: list[Phrase] | None = Field(default=None, max_length=MAX_LIST)
    documents: list[Document] | None = Field(default=None, max_length=MAX_DOCUMENTS)
    examples: list[Example] | None = Field(default=None, max_length=MAX_DOCUMENTS)
    keywords: list[Phrase] | None = Field(default=None, max_length=MAX_LIST)
    mode: Mode | None = None
    policy: Policy | None = None


class Target(BaseModel):
    id: str
    object: Literal["forget_target"] = "forget_target"
    name: str
    version: int
    status: str
    error: str | None = None
    mode: str
    policy: str
    aliases: list[str]
    keywords: list[str]
    documents: int
    examples: int
    created_at: float
    updated_at: float


class TargetImport(_Strict):
    targets: list[TargetCreate] = Field(min_length=1, max_length=1000)


class ScreenRequest(_Strict):
    """What a client would send: chat messages, or a prompt."""

    messages: list[dict[str, Any]] | None = Field(default=None, max_length=256)
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=200_000)] | None = None


class TargetList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Target]
    has_more: bool
    last_id: str | None = None


class TargetDeleted(BaseModel):
    id: str
    object: Literal["forget_target.deleted"] = "forget_target.deleted"
    deleted: bool = True


class AdapterLoad(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
