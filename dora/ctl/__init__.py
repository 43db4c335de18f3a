"""``doractl``: the command line of Dora, in kubectl's manner.

Map of the package:

- ``main``: the typer app, the root options and ``main()``, which turns
  ``dora.api.errors`` into a message and an exit code (0 ok, 1 error, 2 usage);
- ``options``: the persistent (global) options every command accepts anywhere on
  the line, and the options several commands share (``-o``, ``-l``, kinds);
- ``profiles``: ``~/.dora/config.yaml`` (contexts) and how flags, environment and
  the current context resolve into one connection (``dora.api.profiles``, which
  the SDK reads too);
- ``session``: running a command's async work against one ``Client``;
- ``manifests`` and ``templating``: reading ``-f`` files, directories and stdin,
  ``$KEY`` substitution, decoding with ``file:line:column`` errors;
- ``columns``, ``humanize`` and ``printers``: tables per kind (rich on a
  terminal, plain otherwise), YAML/JSON/name output, ages; ``jsonpath``:
  kubectl's templates for ``-o jsonpath=``, ``-o custom-columns=``, ``--sort-by``;
- ``explain``: ``doractl explain``'s text, from the protos' comments;
- ``commands/``: one module per command group (config, apply/diff, get,
  describe, delete, workload verbs, top...).

This package reaches the cluster only through ``dora.api.client``; it imports no
other component.
"""
