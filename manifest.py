metadata(version="0.1.0", description="Memory-frugal SMTP client: STARTTLS, AUTH, streamed bodies.")

module("smtp_client.py", base_path="lib")
