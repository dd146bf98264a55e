"""The emulator's blob storage: the Azure Block Blob operations the Azure SDK's client uses (Put Block, Put
Block List, Put Blob, Get Blob with ranges) behind signed URLs, which `blobs.Signer` checks like a SAS.
"""

from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import unquote

from modelbake.httpserve import RangeNotSatisfiable, parse_range
from testkit.ghacache import blobs
from testkit.ghacache.faults import BUSY, EXPIRED, REFUSED, RESET
from testkit.ghacache.handler import CHUNK, BadRequest, CacheHandler, prefixed
from testkit.ghacache.store import StoreError

MAX_BLOCK_BYTES = 4000 * 1024 * 1024  # Azure's limit for one Put Block


def _etag(seed: str) -> str:
    """An Azure-style ETag (`0x` and 16 hex digits), stable for the same blob."""
    return "0x" + hashlib.sha256(seed.encode()).hexdigest()[:16].upper()


class BlobRoutes(CacheHandler):
    """Requests to the signed blob URLs."""

    def _blob(self, path: str, query: str) -> None:
        service = self.server.service
        self._maybe_expire(path)
        try:
            target = service.signer.check(path, query, service.faults.urls_valid_from)
        except blobs.SasError as e:
            self._record.fault = EXPIRED if isinstance(e, blobs.SasExpired) else ""
            return self._blob_error(403, "AuthenticationFailed", blobs.AUTH_FAILED, auth_detail=str(e))
        if target.kind == blobs.DOWNLOAD and self.command in ("GET", "HEAD"):
            fault = service.faults.download_fault(self._download_key())
            if fault is not None:
                return self._fail_download(fault.answer, fault.retry_after)
        params = {k: v for k, _, v in (p.partition("=") for p in query.split("&")) if k}
        try:
            if target.kind == blobs.DOWNLOAD and self.command in ("GET", "HEAD"):
                return self._get_blob(target.blob_id)
            if target.kind == blobs.UPLOAD and self.command == "PUT":
                return self._put(target.blob_id, params)
        except StoreError as e:
            status = 404 if e.code == "BlobNotFound" else 400
            return self._blob_error(status, e.code, e.message)
        except BadRequest as e:
            return self._blob_error(400, "InvalidInput", str(e))
        sp = blobs.PERMISSIONS[target.kind]
        return self._blob_error(403, "AuthorizationPermissionMismatch", f"{self.command} is not allowed by sp={sp}")

    def _fail_download(self, answer: str, retry_after: int | None) -> None:
        """A download fault, answered as Azure Blob Storage answers it (see `testkit.ghacache.faults`)."""
        self._record.fault = answer
        if answer == RESET:
            return self._reset_connection()
        if answer == BUSY:
            return self._blob_error(503, "ServerBusy", "Egress is over the account limit.", retry_after=retry_after)
        assert answer == REFUSED, answer
        now = time.time()  # as if the URL ran out a second before this request came
        return self._blob_error(
            403, "AuthenticationFailed", blobs.AUTH_FAILED, auth_detail=blobs.expired_detail(now - 1, now)
        )

    def _maybe_expire(self, path: str) -> None:
        """The `expire_before_download` fault: this download's URL ran out just before it arrived."""
        faults = self.server.service.faults
        if prefixed(self._download_key(), faults.expire_before_download):
            faults.expire_before_download = None
            faults.expire_signed_urls()

    def _put(self, upload_id: int, params: dict[str, str]) -> None:
        store = self.server.service.store
        comp = params.get("comp", "")
        if comp == "block":
            block_id = unquote(params.get("blockid", ""))
            if not blobs.valid_block_id(block_id):
                raise BadRequest(f"blockid {block_id!r} is not base64 of at most 64 bytes")
            store.stage_block(upload_id, block_id, self._counted(MAX_BLOCK_BYTES))
            return self._blob_reply(201, {**self._azure_headers(), "x-ms-request-server-encrypted": "true"})
        if comp == "blocklist":
            try:
                ids = blobs.parse_block_list(b"".join(self._body(blobs.MAX_BLOCK_LIST_BODY)))
            except ValueError as e:
                raise BadRequest(str(e)) from None
            size = store.commit_block_list(upload_id, ids)
            return self._blob_reply(201, {**self._azure_headers(), **self._properties(upload_id, size)})
        if comp == "" and self.headers.get("x-ms-blob-type") == "BlockBlob":
            size = store.put_blob(upload_id, self._counted(MAX_BLOCK_BYTES))
            return self._blob_reply(201, {**self._azure_headers(), **self._properties(upload_id, size)})
        raise BadRequest(f"unsupported PUT (comp={comp!r}, x-ms-blob-type={self.headers.get('x-ms-blob-type')!r})")

    @staticmethod
    def _properties(upload_id: int, size: int) -> dict[str, str]:
        return blobs.blob_properties(_etag(f"{upload_id}:{size}"), time.time())

    def _get_blob(self, entry_id: int) -> None:
        service = self.server.service
        entry = service.store.get(entry_id)
        if entry is None:
            return self._blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        with open(service.store.data_path(entry), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            header = self.headers.get("x-ms-range") or self.headers.get("Range")
            try:
                span = parse_range(header, size) if header else None
            except RangeNotSatisfiable:
                return self._blob_error(416, "InvalidRange", "The range specified is invalid for the current size.")
            start, end = span if span is not None else (0, size - 1)
            etag = _etag(f"{entry.id}:{entry.seq}")
            headers = {
                **self._azure_headers(),
                **blobs.download_properties(etag, entry.created),
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
            }
            if span is not None:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self.send_response(206 if span is not None else 200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(max(0, end - start + 1)))
            self.end_headers()
            if self.command == "HEAD":
                return
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                data = fh.read(min(CHUNK, remaining))
                if not data:
                    self.close_connection = True  # short body: the client fails loudly
                    break
                service._add(downloaded=len(data))
                self._write(data)
                remaining -= len(data)
