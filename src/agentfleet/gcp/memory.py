"""MemoryStore on Firestore: one subcollection per workspace, searched by an array of terms.

`{collection}/{workspace_id}/entries/{entry_id}` holds an entry's JSON under `entry`, with
`created_at` (a native timestamp) and `terms` (agentfleet.memory.terms, at most MAX_TERMS) beside
it. A search is one `array_contains_any` query on `terms` with the query's terms (at most 30, as
Firestore allows), ranked here as the memory model says (most shared terms, then newest); `recent`
orders by `created_at`. Both are single-field queries inside one workspace's subcollection, which
Firestore's automatic indexes serve: no composite index to deploy, and clearing a workspace is
deleting one subcollection. The collection is `{tasks_collection}-memory`, beside the tasks.

Why Firestore and not the bucket: a recall must answer in one round trip, while a workspace's
memory in GCS would be either one object rewritten by every task (a read-modify-write race between
two tasks of a workspace, settled by generation preconditions and retries) or one object per entry
read whole on every search. Firestore already holds the tasks, is transactional, and its query
on an array field is the word index that this memory needs. No vector search: the entries are
short, written by tasks in the words the next query is likely to use, and a vector index would be
a second service to deploy and pay for (see the README's memory section).
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore
from pydantic import ValidationError

from agentfleet.gcp.errors import CorruptDocumentError, translated
from agentfleet.gcp.store import firestore_client
from agentfleet.memory import KEEP_PER_WORKSPACE, MAX_QUERY_TERMS, MemoryEntry, rank, terms
from agentfleet.settings import Settings

FIX = "check AGENTFLEET_FIRESTORE_DATABASE and that the service account may use Firestore (roles/datastore.user)"
_BATCH = 400
"""Deletes per batch when a workspace is cleared or pruned (Firestore takes 500 writes in one)."""


class FirestoreMemoryStore:
    def __init__(self, client: firestore.Client, collection: str, *, timeout_s: float = 30.0) -> None:
        self.client = client
        self.workspaces = client.collection(collection)
        retry = Retry(if_exception_type(gexc.ServiceUnavailable, gexc.ResourceExhausted), timeout=timeout_s)
        self._call: dict[str, Any] = {"retry": retry, "timeout": min(timeout_s, 20.0)}

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreMemoryStore:
        return cls(firestore_client(settings), f"{settings.tasks_collection}-memory")

    def _entries(self, workspace_id: str) -> Any:
        return self.workspaces.document(workspace_id).collection("entries")

    def add(self, entry: MemoryEntry) -> MemoryEntry:
        kept = entry.clipped()
        doc = {"entry": kept.model_dump(mode="json"), "created_at": kept.created_at, "terms": kept.terms()}
        with translated("Firestore memory add", fix=FIX):
            self._entries(kept.workspace_id).document(kept.id).create(doc, **self._call)
            self._prune(kept.workspace_id)
        return kept

    def _prune(self, workspace_id: str) -> None:
        """Remove what is past KEEP_PER_WORKSPACE, oldest first (two tasks racing may each remove
        the same ones: a delete of a missing document is no error)."""
        entries = self._entries(workspace_id)
        count = int(entries.count().get(**self._call)[0][0].value)  # an aggregation: no read per entry
        if count <= KEEP_PER_WORKSPACE:
            return
        oldest = entries.order_by("created_at").limit(count - KEEP_PER_WORKSPACE).select([])
        self._delete([snap.reference for snap in oldest.stream(**self._call)])

    def _delete(self, refs: list[Any]) -> None:
        for start in range(0, len(refs), _BATCH):
            batch = self.client.batch()
            for ref in refs[start : start + _BATCH]:
                batch.delete(ref)
            batch.commit(**self._call)

    def recent(self, workspace_id: str, limit: int = 20) -> list[MemoryEntry]:
        query = self._entries(workspace_id).order_by("created_at", direction=firestore.Query.DESCENDING)
        with translated("Firestore memory recent", fix=FIX):
            return [_entry(snap) for snap in query.limit(limit).stream(**self._call)]

    def search(self, workspace_id: str, query: str, limit: int = 5) -> list[MemoryEntry]:
        wanted = terms(query, MAX_QUERY_TERMS)
        if not wanted or limit < 1:
            return []
        found = self._entries(workspace_id).where(filter=firestore.FieldFilter("terms", "array_contains_any", wanted))
        with translated("Firestore memory search", fix=FIX):
            entries = [_entry(snap) for snap in found.limit(KEEP_PER_WORKSPACE).stream(**self._call)]
        return rank(entries, query, limit)

    def clear(self, workspace_id: str) -> int:
        with translated("Firestore memory clear", fix=FIX):
            refs = [snap.reference for snap in self._entries(workspace_id).select([]).stream(**self._call)]
            self._delete(refs)
        return len(refs)

    def health(self) -> dict[str, Any]:
        try:
            with translated("Firestore memory health", fix=FIX):
                next(iter(self.workspaces.limit(1).stream(**self._call)), None)
        except Exception as exc:  # a health report never raises: it says what failed
            return {"ok": False, "backend": "firestore", "error": str(exc)}
        return {"ok": True, "backend": "firestore"}


def _entry(snap: Any) -> MemoryEntry:
    try:
        return MemoryEntry.model_validate((snap.to_dict() or {}).get("entry", {}))
    except ValidationError as exc:
        raise CorruptDocumentError(f"memory entry {snap.reference.path} is not one this store writes: {exc}") from None
