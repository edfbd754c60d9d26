"""Language-model machinery shared by `sft` and `augment`.

- `load`: (model, tokenizer) from a packaged name, a local dir, a GGUF file or a hub id; tiny test models.
- `prompt`: the Eq. 1 prompt as `inputs_embeds`, length bucketing.
- `tasks`: SFT tasks (instances, head, loss); only "group" for now.
- `model`: the PromptLM wrapper and the adapter artifact format.
"""
