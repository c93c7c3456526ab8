"""Dataset and model cards from the project's own records, and publishing to the Hugging Face Hub.

- facts.py: shard verification against shards/index.json, and the numbers the cards state
- dataset_card.py, model_card.py: the cards (huggingface_hub DatasetCard / ModelCard)
- plots.py: the pictures beside the dataset card
- publish.py: assemble the upload, then commit it to the Hub in resumable chunks
"""
