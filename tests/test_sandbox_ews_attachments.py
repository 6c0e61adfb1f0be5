"""EWS sandbox attachments as Exchange keeps them: created with the item or on its own
(CreateAttachment), listed by GetItem without content, fetched whole by GetAttachment,
removed by DeleteAttachment; HasAttachments follows them and the parent's ChangeKey changes."""

import pytest
from exchangelib import FileAttachment, ItemAttachment, Message
from exchangelib.errors import ErrorInvalidAttachmentId
from sandbox_process import SandboxProcess
from test_sandbox_ews import account, ews  # noqa: F401  (ews is a fixture)

from l2sync_dagster.sandbox.control import SandboxControl


def test_file_attachment_created_with_the_item(sandbox: SandboxProcess,
                                               ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    msg = Message(account=acc, folder=acc.drafts, subject="with a file")
    msg.attach(FileAttachment(name="a.txt", content=b"hello"))
    msg.save()
    assert msg.attachments[0].attachment_id is not None
    fresh = acc.drafts.get(id=msg.id)
    assert fresh.has_attachments is True
    [att] = fresh.attachments
    assert (att.name, att.size, att.content_type) == ("a.txt", 5, "text/plain")
    assert att.content == b"hello"  # GetAttachment
    # FindItem does not return attachments, only whether there are any
    found = acc.drafts.filter(subject="with a file").only("has_attachments")[0]
    assert found.has_attachments is True


def test_attach_and_detach_on_a_saved_item(sandbox: SandboxProcess,
                                           ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    inner = Message(account=acc, folder=acc.drafts, subject="inner", body="inner body")
    inner.save()
    msg = Message(account=acc, folder=acc.drafts, subject="outer")
    msg.save()
    key = msg.changekey
    att = ItemAttachment(name="forwarded", item=inner)
    msg.attach(att)  # CreateAttachment
    assert msg.changekey != key
    fresh = acc.drafts.get(id=msg.id)
    assert fresh.changekey == msg.changekey
    [got] = fresh.attachments
    assert got.name == "forwarded"
    assert (got.item.subject, got.item.body) == ("inner", "inner body")  # GetAttachment
    att_id = att.attachment_id
    msg.detach(att)  # DeleteAttachment
    fresh = acc.drafts.get(id=msg.id)
    assert fresh.attachments == [] and fresh.has_attachments is False
    gone = FileAttachment(parent_item=fresh, attachment_id=att_id, name="x")
    with pytest.raises(ErrorInvalidAttachmentId):
        gone.content  # noqa: B018  (GetAttachment of a deleted attachment)


def test_text_body_and_mime_content(sandbox: SandboxProcess,
                                    ews: SandboxControl) -> None:  # noqa: F811
    from exchangelib import HTMLBody

    acc = account(sandbox, "sync@sandbox.test")
    msg = Message(account=acc, folder=acc.drafts, subject="bodies",
                  body=HTMLBody("<html><body><p>Hello <b>you</b></p></body></html>"))
    msg.save()
    fresh = acc.drafts.all().only("text_body", "mime_content").get(id=msg.id)
    assert fresh.text_body == "Hello you"
    assert b"Subject: bodies" in fresh.mime_content


def test_message_created_from_mime(sandbox: SandboxProcess,
                                   ews: SandboxControl) -> None:  # noqa: F811
    """A message created with MimeContent only takes its Subject, Body and From from it."""
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    acc = account(sandbox, "sync@sandbox.test")
    mime = MIMEMultipart()
    mime["From"], mime["Subject"] = "ann@x.test", "from mime"
    mime.attach(MIMEText("MIME body", "plain", _charset="utf-8"))
    Message(account=acc, folder=acc.drafts, mime_content=mime.as_bytes()).save()
    got = acc.drafts.get(subject="from mime")
    assert (got.body, got.author.email_address) == ("MIME body", "ann@x.test")
