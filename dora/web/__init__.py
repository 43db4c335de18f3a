"""``dora-web``: the web app's gateway, a client of the apiserver like ``doractl``.

It serves the single-page app built from ``web/`` and an HTTP API for it. Every
API call is made to the apiserver with the signed-in user's own token (sent by
the page as ``Authorization: Bearer``), so the apiserver authorizes everything
and a user sees and does in the page exactly what their token allows with
doractl. The gateway never touches etcd and keeps no state of its own beyond one
gRPC connection shared by all users.
"""
